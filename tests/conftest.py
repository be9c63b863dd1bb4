"""Test-suite wiring: shared fixtures, CI's rule that nothing may be skipped, and the secret
scan that ends every session.

In CI (``CI`` set) a skipped test is reported as a failure, so a missing engine can never
pass silently. When the session ends, the data dir (store, sealed secrets, audit log) and the
log of every keyturn server the tests started are searched for every plaintext secret the
tests used: passwords set through the APIs (``tests.support.passwords.USED_PASSWORDS``), the
throwaway engines' admin passwords and the inventory's access-key secrets. Any hit fails the
session, naming the files (never the secret).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import pytest

from tests.support.keyturn_server import CREATED, HW_SK, KEY_SECRET, OTHER_KEY_SECRET
from tests.support.mysql_server import MariaDBServer
from tests.support.passwords import USED_PASSWORDS
from tests.support.postgres_server import TEMPLATE_PASSWORD, PostgresServer
from tests.support.redis_server import ADMIN_PASSWORDS, RedisServer

pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.store_backends",
    "tests.support.keyturn_cluster",
]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed: {report.longrepr}"


# --------------------------------------------------------------------------- secret scan

#: Admin passwords of every throwaway engine server made in this session.
ENGINE_PASSWORDS: list[str] = []
#: Shorter strings could occur by chance in sealed (random) data.
_MIN_SECRET = 8


def _recording_passwords(cls: type[Any]) -> None:
    """Wrap ``cls.__init__`` to remember each server's admin password (cheaper than editing
    every fixture that makes one)."""
    original = cls.__init__

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if isinstance(getattr(self, "password", None), str):
            ENGINE_PASSWORDS.append(self.password)

    cls.__init__ = init


for _engine in (RedisServer, PostgresServer, MariaDBServer):
    _recording_passwords(_engine)


def _test_secrets() -> dict[str, str]:
    """Secret -> what it is, for the report."""
    found = {TEMPLATE_PASSWORD: "an engine admin password"}
    found |= dict.fromkeys(ENGINE_PASSWORDS, "an engine admin password")
    found |= dict.fromkeys(ADMIN_PASSWORDS, "an engine admin password")
    found |= dict.fromkeys(USED_PASSWORDS, "a password set by a test")
    found |= dict.fromkeys((KEY_SECRET, OTHER_KEY_SECRET, HW_SK), "an access-key secret")
    return {secret: kind for secret, kind in found.items() if len(secret) >= _MIN_SECRET}


def scan_for_secrets() -> tuple[list[str], int, int]:
    """(``path: what`` for every file of a keyturn server's data dir or log that holds a test
    secret, how many secrets were looked for, how many files were read)."""
    secrets = {secret.encode(): kind for secret, kind in _test_secrets().items()}
    hits: list[str] = []
    read = 0
    for server in CREATED:
        files = [server.log_path]
        if server.data_dir.is_dir():
            files += sorted(p for p in server.data_dir.rglob("*") if p.is_file())
        for path in files:
            try:
                data = path.read_bytes()
            except OSError:
                continue  # removed with its temporary directory, or never written
            read += 1
            kinds = sorted({kind for secret, kind in secrets.items() if secret in data})
            hits += [f"{path}: {kind}" for kind in kinds]
    return hits, len(secrets), read


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not CREATED:
        return
    hits, looked_for, read = scan_for_secrets()
    summary = f"secret scan: {looked_for} test secrets in {read} files of {len(CREATED)} servers"
    lines = [f"{summary}: FOUND", *hits] if hits else [f"{summary}: none found"]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line, red=bool(hits))
    else:
        print("\n".join(lines), file=sys.stderr)
    if hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
