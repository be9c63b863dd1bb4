"""How ``keyturn rotate`` shows a fleet job: a rich progress bar while it runs, the summary,
the per-instance outcome table (every target of a small job; of a large one, those that did
not succeed) and the outcomes as JSON. A rolled-back or failed instance is shown with its
reason. Passwords appear only when the caller asked for them (``--show-passwords``): in the
table on a terminal, in the JSON file (written 0600)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keyturn.core.fleet import FleetJob, JobState, TargetState
from keyturn.service.fleet import FleetJobs, Outcome

#: Up to this many targets every one is listed; above, only those that did not succeed.
FULL_TABLE: Final = 100
#: Seconds between two reads of the job while waiting.
POLL: Final = 0.5


def job_summary(job: FleetJob) -> dict[str, Any]:
    selector = json.loads(job.selector.to_json())
    return {
        "id": job.id,
        "tenant": job.tenant_id,
        "state": str(job.state),
        "reason": job.reason,
        "waves": job.waves,
        "counts": job.counts.as_dict(),
        "options": json.loads(job.options.to_json()),
        "selector": selector,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    t = outcome.target
    found: dict[str, Any] = {
        "instance": t.instance_id,
        "product": str(t.product),
        "account": t.account,
        "wave": t.wave,
        "state": str(t.state),
        "reason": t.reason,
        "task_id": t.task_id,
        "attempts": t.attempts,
    }
    if t.delivered_to:
        found["delivered_to"] = t.delivered_to
    if t.flow_id is not None:
        found["flow_id"] = t.flow_id
    if outcome.password is not None:
        found["password"] = outcome.password.reveal()
    return found


async def wait_for(
    console: Console, read: Callable[[], Awaitable[FleetJob]], *, interactive: bool
) -> FleetJob:
    """Poll the job until it is no longer running; a progress bar on a terminal."""
    job = await read()
    if not interactive:
        while job.state is JobState.RUNNING:
            await asyncio.sleep(POLL)
            job = await read()
        return job
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(job.id, total=job.counts.total, detail="")
        while True:
            c = job.counts
            detail = f"{c.in_flight} in flight, {c.failures} failed  [{job.state}]"
            progress.update(bar, completed=c.finished, detail=detail)
            if job.state is not JobState.RUNNING:
                return job
            await asyncio.sleep(POLL)
            job = await read()


async def report(
    console: Console,
    fleet: FleetJobs,
    job: FleetJob,
    *,
    passwords: bool,
    json_file: Path | None,
) -> None:
    """The summary and outcome table on ``console``; the JSON file when asked for."""
    c = job.counts
    console.print(
        f"fleet job {job.id}: {job.state}"
        + (f" ({job.reason})" if job.reason else "")
        + f"\n{c.total} targets in {job.waves} wave(s): {c.succeeded} succeeded, "
        f"{c.failed} failed, {c.rolled_back} rolled back, {c.in_flight} in flight, "
        f"{c.pending} pending"
    )
    full = c.total <= FULL_TABLE
    table = Table("instance", "account", "wave", "state", "task", "reason")
    if passwords:
        table.add_column("new password")
    rows: list[dict[str, Any]] = []
    shown = 0
    async for outcome in fleet.outcomes(job.id, passwords=passwords):
        if json_file is not None:
            rows.append(outcome_json(outcome))
        t = outcome.target
        if full or t.state is not TargetState.SUCCEEDED:
            shown += 1
            cells = [
                t.instance_id,
                t.account,
                str(t.wave),
                str(t.state),
                "-" if t.task_id is None else str(t.task_id),
                t.reason,
            ]
            if passwords:
                cells.append("" if outcome.password is None else outcome.password.reveal())
            table.add_row(*cells)
    if shown:
        if not full:
            console.print("targets that did not succeed:")
        console.print(table)
    if json_file is not None:
        write_private(json_file, json.dumps({"job": job_summary(job), "targets": rows}, indent=1))
        console.print(f"outcomes written to {json_file}")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (it may hold passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
