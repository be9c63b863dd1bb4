"""Options shared by every command that acts on a data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", envvar="KEYTURN_CONFIG", help="Inventory/config TOML file."),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", envvar="KEYTURN_DATA_DIR", help="State directory (default ./.keyturn)."
    ),
]
