"""``keyturn rotate start|status|pause|resume|abort|list``: fleet rotation jobs on the data
dir's store. ``start`` selects the targets and writes the job; the running server nodes drive
it (whichever claims it), so this command may end, be killed or run on another machine:
``--wait`` follows the job with a progress bar until it stops running (done, paused by its
failure threshold, or aborted). Every command reads and changes the job's state in the store,
so any node's CLI steers any job. Exit status: 0 done with every target succeeded, 1 done
with failures or aborted, 3 paused, 2 refused."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from keyturn.bootstrap import open_admin_store
from keyturn.cli.options import ConfigOption, DataDirOption
from keyturn.cli.rotate_report import report, wait_for
from keyturn.config import ConfigError, load_settings
from keyturn.core.errors import DomainError
from keyturn.core.fleet import FleetJob, FleetOptions, JobState, Selector, Threshold, parse_labels
from keyturn.core.fleet import parse_accounts as accounts_of
from keyturn.core.model import Product
from keyturn.service.context import SystemClock
from keyturn.service.fleet import FleetJobs, steer_audited
from keyturn.store.audit_keying import start_audit_log
from keyturn.store.fleet import SqlFleetRepo

rotate = typer.Typer(help="Rotate passwords across a fleet, in waves.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 200)
T = TypeVar("T")

JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Write the outcomes as JSON to this file (0600).")
]
ShowOption = Annotated[
    bool,
    typer.Option(
        "--show-passwords",
        help="Show the new passwords (on a terminal, or in the --json file).",
    ),
]
WaitOption = Annotated[bool, typer.Option("--wait", help="Follow the job until it stops.")]
JobArgument = Annotated[str, typer.Argument(help="The job id (fj-...).")]


def _run(
    config: ConfigOption, data_dir: DataDirOption, action: Callable[[FleetJobs], Awaitable[T]]
) -> T:
    async def go() -> T:
        store = await open_admin_store(load_settings(config=config, data_dir=data_dir))
        try:
            return await action(FleetJobs(store, SqlFleetRepo(store.db)))
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (ConfigError, DomainError) as exc:
        typer.echo(f"keyturn: {exc}", err=True)
        raise typer.Exit(2) from None


def _check_show(show: bool, json_file: Path | None) -> None:
    if show and json_file is None and not sys.stdout.isatty():
        typer.echo(
            "keyturn: --show-passwords prints only to a terminal (or give --json FILE)", err=True
        )
        raise typer.Exit(2)


async def _follow(
    fleet: FleetJobs, job: FleetJob, wait: bool, show: bool, json_file: Path | None
) -> FleetJob:
    if wait:
        job = await wait_for(console, lambda: fleet.status(job.id), interactive=sys.stdout.isatty())
    await report(console, fleet, job, passwords=show, json_file=json_file)
    return job


def _exit(job: FleetJob) -> None:
    if job.state is JobState.PAUSED:
        raise typer.Exit(3)
    if job.state is JobState.ABORTED or (job.state is JobState.DONE and job.counts.failures):
        raise typer.Exit(1)


@rotate.command("start")
def start(
    tenant: Annotated[str, typer.Option(help="The tenant whose instances rotate.")],
    product: Annotated[Product | None, typer.Option(help="Only this product.")] = None,
    instances: Annotated[
        str | None, typer.Option(help="Only instance ids matching this glob (crs-prod-*).")
    ] = None,
    region: Annotated[str | None, typer.Option(help="Only this region.")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(help="Only instances with this label, KEY=VALUE; repeatable (all match)."),
    ] = None,
    account: Annotated[
        list[str] | None,
        typer.Option(
            help="The account to rotate: NAME, or ENGINE:NAME (redis:, postgres:, mysql:); "
            "repeatable. Redis defaults to default (the instance password)."
        ),
    ] = None,
    canary: Annotated[int, typer.Option(help="Targets in the first wave.")] = 1,
    max_in_flight: Annotated[int, typer.Option(help="Changes running at once.")] = 8,
    stop_after_failures: Annotated[
        str, typer.Option(help="Pause past this many failures: N, or PCT% of finished.")
    ] = "0",
    paused: Annotated[
        bool, typer.Option(help="Write the job paused: review its targets, then resume it.")
    ] = False,
    json_file: JsonOption = None,
    show_passwords: ShowOption = False,
    wait: WaitOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Start a fleet rotation job (the server nodes drive it); print its id."""
    _check_show(show_passwords, json_file)

    async def go(fleet: FleetJobs) -> FleetJob:
        selector = Selector(
            tenant_id=tenant,
            product=product,
            instances=instances,
            region=region,
            accounts=accounts_of(account or []),
            labels=parse_labels(label or []),
        )
        options = FleetOptions(
            canary=canary,
            max_in_flight=max_in_flight,
            stop_after=Threshold.parse(stop_after_failures),
            paused=paused,
        )
        job = await fleet.start(selector, options)
        console.print(f"started fleet job {job.id}: {job.counts.total} targets, {job.waves} waves")
        if not wait and json_file is None:
            return job
        return await _follow(fleet, job, wait, show_passwords, json_file)

    job = _run(config, data_dir, go)
    if wait:
        _exit(job)


@rotate.command("status")
def status(
    job_id: JobArgument,
    json_file: JsonOption = None,
    show_passwords: ShowOption = False,
    wait: WaitOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """A job's state, counts and per-instance outcomes."""
    _check_show(show_passwords, json_file)

    async def go(fleet: FleetJobs) -> FleetJob:
        return await _follow(fleet, await fleet.status(job_id), wait, show_passwords, json_file)

    _exit(_run(config, data_dir, go))


#: The admin API operation each steering command is audited as (the same records).
_OPERATIONS = {"pause": "PauseFleetJob", "resume": "ResumeFleetJob", "abort": "AbortFleetJob"}


def _steer(name: str, doc: str) -> None:
    def command(
        job_id: JobArgument, config: ConfigOption = None, data_dir: DataDirOption = None
    ) -> None:
        async def go() -> FleetJob:
            settings = load_settings(config=config, data_dir=data_dir)
            store = await open_admin_store(settings)
            try:
                audit = await start_audit_log(store, settings.data_dir)
                fleet = FleetJobs(store, SqlFleetRepo(store.db))
                return await steer_audited(
                    fleet, audit, SystemClock(), name, _OPERATIONS[name], job_id
                )
            finally:
                await store.close()

        try:
            job = asyncio.run(go())
        except (ConfigError, DomainError) as exc:
            typer.echo(f"keyturn: {exc}", err=True)
            raise typer.Exit(2) from None
        reason = f" ({job.reason})" if job.reason else ""
        console.print(f"fleet job {job.id}: {job.state}{reason}")

    command.__doc__ = doc
    rotate.command(name)(command)


_steer("pause", "Pause a job: no new change starts; changes in flight finish.")
_steer("resume", "Resume a paused job; its failed targets are tried again.")
_steer("abort", "Abort a job: no new change starts; changes in flight finish.")


@rotate.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """The latest fleet jobs."""
    jobs = _run(config, data_dir, lambda fleet: fleet.jobs(tenant))
    table = Table("job", "tenant", "state", "targets", "succeeded", "failed", "created")
    for job in jobs:
        c = job.counts
        table.add_row(
            job.id,
            job.tenant_id,
            str(job.state),
            str(c.total),
            str(c.succeeded),
            str(c.failures),
            job.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)
