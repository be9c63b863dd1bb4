"""``keyturn keys rotate-master`` and ``keyturn keys rotate``: replace the master key that seals
secrets at rest, or an access key's signing secret.

``rotate-master`` needs the server stopped (it refuses while one holds the data dir; servers on
other machines sharing a PostgreSQL store are not seen, so stop them all first) and re-seals
everything in one transaction (``keyturn.store.rekey``), re-keying the audit chain with it,
and reports the chain's new head hash. With the key in
``master.key`` the new key replaces it; with ``KEYTURN_MASTER_KEY`` the new key is written to
the file given by ``--new-key-file`` (0600, outside the data dir) and is never printed, so it
does not end up in a terminal's scrollback or a CI log: the operator moves it into the
environment and deletes the file. ``rotate KEY`` prints the new secret once; the old one stops
working within the server's one-second key cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from keyturn.bootstrap import open_admin_store
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.config import ConfigError, load_settings
from keyturn.core.errors import DomainError, NotFound
from keyturn.core.model import AccessKey, KeySource
from keyturn.service.admin import new_key_secret
from keyturn.service.context import SystemClock
from keyturn.store.opening import sqlite_url
from keyturn.store.rekey import Rotation, rotate_master_key


def rotate_master(
    new_key_file: Annotated[
        Path | None,
        typer.Option(
            help="With KEYTURN_MASTER_KEY: the file to write the new key to (0600)."
            " An existing file from an interrupted rotation is resumed."
        ),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Re-seal every stored secret under a new master key (stop the server first)."""
    try:
        settings = load_settings(config=config, data_dir=data_dir)
        rotation = asyncio.run(
            rotate_master_key(
                data_dir=settings.data_dir,
                database_url=settings.database_url or sqlite_url(settings.data_dir),
                env_key=settings.master_key,
                new_key_file=new_key_file,
                clock=SystemClock(),
            )
        )
    except (ConfigError, DomainError, ValueError, OSError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(_report(rotation))


def _report(rotation: Rotation) -> str:
    total = sum(rotation.resealed.values())
    detail = ", ".join(f"{n} in {name}" for name, n in rotation.resealed.items() if n)
    lines = [
        f"master key rotated: {rotation.old_key_id} -> {rotation.new_key_id};"
        f" {total} secret(s) re-sealed{f' ({detail})' if detail else ''}.",
        "The old key no longer opens anything.",
        _audit_report(rotation),
    ]
    if rotation.from_env:
        lines.append(
            f"The new key is in {rotation.key_file} (mode 0600). Set KEYTURN_MASTER_KEY to its"
            " content wherever keyturn runs, then delete the file."
        )
    else:
        lines.append(f"The new key is in {rotation.key_file}.")
    return "\n".join(lines)


def _audit_report(rotation: Rotation) -> str:
    done = rotation.audit
    if done.check.intact:
        return (
            f"audit chain re-keyed under the new key: {done.rekeyed} record(s) rewritten;"
            f" head hash now {done.head_hash}."
        )
    return (
        f"AUDIT CHAIN BROKEN at record {done.check.bad_seq} ({done.check.problem}): the"
        f" {done.check.records} record(s) before it were re-keyed, record {done.check.bad_seq}"
        " on were kept as found; `keyturn audit verify` keeps reporting the break."
    )


def rotate_key(
    key_id: Annotated[str, typer.Argument(help="The access key id.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Give an access key a new secret, printed once; the old one stops working within 1 s."""

    async def go() -> AccessKey:
        store = await open_admin_store(load_settings(config=config, data_dir=data_dir))
        try:
            key = await store.get_access_key(key_id)
            if key is None:
                raise NotFound(f"access key {key_id!r} does not exist")
            if key.source is KeySource.INVENTORY:
                # The next start would put the file's secret back.
                raise DomainError(
                    f"access key {key_id!r} is declared in the inventory file: change its"
                    " secret (or secret_env) there and restart"
                )
            # Only the secret changes: enabled, policies and source stay as they are.
            rotated = dataclasses.replace(key, secret=new_key_secret())
            if not await store.set_access_key_secret(key_id, rotated.secret):
                raise NotFound(f"access key {key_id!r} does not exist")
            return rotated
        finally:
            await store.close()

    try:
        key = asyncio.run(go())
    except (ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"SecretId  {key.id}\nSecretKey {key.secret.reveal()}")
