"""An application that takes its database password from the secret manager keeps working
across three rotations with zero failed logins, on Redis, PostgreSQL and MariaDB, through the
official Tencent SSM and Alibaba KMS SDKs against a real keyturn server.

The secrets rotate in **replace mode** (keyturn's overlap mode is not served yet), so the
application follows the rule replace mode needs, *fetch after rotation*: its open session
keeps querying while the rotation runs (changing a password never ends a session), and it
fetches the secret again and reconnects once the rotation finished. Every login it makes
must succeed; the password it held before each rotation must stop working (it was replaced).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

import pytest

from tests.support.keyturn_server import KeyturnServer
from tests.support.secret_engines import Engine, Session, engine_for, recorded
from tests.support.secret_sdks import (
    kms_create,
    kms_rotate,
    kms_sdk,
    kms_value,
    ssm_create,
    ssm_credential,
    ssm_rotate,
    ssm_sdk,
)

pytestmark = pytest.mark.engine

ROTATIONS = 3


class App:
    """The application: ``fetch`` reads its credential from the secret manager; ``connect``
    logs in with it. Its session queries in a thread of its own, all the time."""

    def __init__(self, engine: Engine, fetch: Callable[[], tuple[str, str]]) -> None:
        self._engine = engine
        self._fetch = fetch
        self.logins = 0
        self.failed_logins = 0
        self.queries = 0
        self.failed_queries = 0
        self.credential = ("", "")
        self._session: Session | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._query_loop, daemon=True)

    def reconnect(self) -> None:
        """Fetch the secret and open a new session with it (closing the old one)."""
        user, password = self._fetch()
        self.credential = (user, recorded(password))
        self.logins += 1
        try:
            session = self._engine.session(user, password)
        except Exception:
            self.failed_logins += 1
            return
        with self._lock:
            old, self._session = self._session, session
        if old is not None:
            old.close()

    def start(self) -> None:
        self.reconnect()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._session is not None:
            self._session.close()

    def _query_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                session = self._session
                if session is not None:
                    self.queries += 1
                    try:
                        session.query()
                    except Exception:
                        self.failed_queries += 1
            time.sleep(0.01)


def run_app(
    engine: Engine, fetch: Callable[[], tuple[str, str]], rotate: Callable[[], object]
) -> App:
    app = App(engine, fetch)
    app.start()
    try:
        for _ in range(ROTATIONS):
            before = app.credential
            queries = app.queries
            rotate()
            assert app.queries > queries  # the session kept working during the rotation
            app.reconnect()  # fetch after rotation
            assert app.credential[1] != before[1]
            assert not engine.login(*before)  # replace mode: the old password is gone
    finally:
        app.stop()
    return app


@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql"])
def test_ssm_application_survives_three_rotations(
    keyturn: KeyturnServer, request: pytest.FixtureRequest, kind: str
) -> None:
    engine = engine_for(keyturn, request, kind, kms=False)
    client = ssm_sdk(keyturn.endpoint)
    name = f"app-{kind}-{secrets.token_hex(3)}"
    engine.prepare("apploop")
    product = {"redis": "Redis", "postgres": "PostgreSQL", "mysql": "Mysql"}[kind]
    ssm_create(client, name, product=product, instance_id=engine.instance_id, prefix="apploop")
    app = run_app(engine, lambda: ssm_credential(client, name), lambda: ssm_rotate(client, name))
    assert (app.logins, app.failed_logins, app.failed_queries) == (ROTATIONS + 1, 0, 0)


@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql"])
def test_kms_application_survives_three_rotations(
    keyturn: KeyturnServer, request: pytest.FixtureRequest, kind: str
) -> None:
    engine = engine_for(keyturn, request, kind, kms=True)
    client = kms_sdk(keyturn.endpoint)
    name = f"app-{kind}-{secrets.token_hex(3)}"
    engine.prepare("apploopkms")
    secret_type = "Redis" if kind == "redis" else "Rds"
    kms_create(
        client, name, secret_type=secret_type, instance_id=engine.instance_id, account="apploopkms"
    )

    def fetch() -> tuple[str, str]:
        user, password, _ = kms_value(client, name)
        return user, password

    app = run_app(engine, fetch, lambda: kms_rotate(client, name))
    assert (app.logins, app.failed_logins, app.failed_queries) == (ROTATIONS + 1, 0, 0)
