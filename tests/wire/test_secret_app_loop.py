"""An application that takes its database password from the secret manager keeps working
across three rotations with zero failed logins, on Redis, PostgreSQL and MariaDB, through the
official Tencent SSM and Alibaba KMS SDKs against a real keyturn server.

**Overlap mode** (asked for through the unchanged SDKs: the ``keyturn:overlap`` tag of an SSM
secret, ``ExtendedConfig.CustomData.Overlap`` of a KMS one): the application fetches the secret
and opens a fresh login over and over, from a thread of its own, while the secret rotates three
times, each once the previous overlap is over (a rotation period is longer than its overlap);
not one login fails, right after a rotation both the old and the new credential log in, and
once the overlap is over only the new one does.

**Replace mode** (no overlap): the rule replace mode needs is *fetch after rotation*. The
application's open session keeps querying while the rotation runs (changing a password never
ends a session), and it fetches the secret again and reconnects once the rotation finished;
every login succeeds and the credential it held before each rotation stops working at once.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator

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
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def keyturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyturnServer]:
    """The module's server, its secret scheduler ticking often: an overlap's follow-up (the
    old credential dropped) runs within a fifth of a second of the overlap's end."""
    server = KeyturnServer(
        tmp_path_factory.mktemp("keyturn"), extra_env={"KEYTURN_SECRET_TICK": "0.2"}
    )
    server.start()
    yield server
    if server.process is not None:
        server.stop()


ROTATIONS = 3
#: The overlap mode's grace period, in seconds: long enough for the checks right after a
#: rotation, short enough to see the old credential go.
OVERLAP = 2
Credential = tuple[str, str]


class App:
    """The application: ``fetch`` reads its credential from the secret manager; ``session``
    logs in with it. ``held``: one session queries all the time (replace mode); else the
    application fetches and logs in afresh all the time (overlap mode)."""

    def __init__(self, engine: Engine, fetch: Callable[[], Credential], *, held: bool) -> None:
        self._engine = engine
        self._fetch = fetch
        self._held = held
        self.logins = 0
        self.failed_logins = 0
        self.queries = 0
        self.failed_queries = 0
        self.seen: list[Credential] = []
        self._session: Session | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def credential(self) -> Credential:
        return self.seen[-1]

    def reconnect(self) -> None:
        """Fetch the secret and open a new session with it (closing the old one)."""
        user, password = self._fetch()
        if not self.seen or self.seen[-1] != (user, password):
            self.seen.append((user, recorded(password)))
        with self._lock:
            self.logins += 1
            try:
                session = self._engine.session(user, password)
            except Exception:
                self.failed_logins += 1
                return
            old, self._session = self._session, session
        if old is not None:
            old.close()

    def start(self) -> None:
        self.reconnect()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._session is not None:
            self._session.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._held:
                self.reconnect()
            with self._lock:
                session = self._session
                if session is not None:
                    self.queries += 1
                    try:
                        session.query()
                    except Exception:
                        self.failed_queries += 1
            time.sleep(0.01)


def replace_mode(
    engine: Engine, fetch: Callable[[], Credential], rotate: Callable[[], object]
) -> App:
    app = App(engine, fetch, held=True)
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
    assert app.logins == ROTATIONS + 1
    return app


def overlap_mode(
    engine: Engine, fetch: Callable[[], Credential], rotate: Callable[[], object]
) -> App:
    """Three rotations, each once the previous overlap is over (as a rotation period longer
    than the overlap has it), while the application logs in afresh all the time."""
    app = App(engine, fetch, held=False)
    app.start()
    both = 0
    try:
        for _ in range(ROTATIONS):
            before = fetch()
            rotate()
            rotated = time.monotonic()
            after = fetch()
            assert after[1] != before[1]
            if time.monotonic() - rotated < OVERLAP / 2:  # surely within the overlap
                assert engine.login(*before) and engine.login(*after)
                both += 1
            logins = app.logins
            while app.logins < logins + 3:  # the application goes on with the new one
                time.sleep(0.02)
            deadline = rotated + OVERLAP + 20
            while engine.login(*before):  # until the follow-up dropped the old credential
                assert time.monotonic() < deadline, "the old credential outlived the overlap"
                time.sleep(0.2)
            assert engine.login(*after)
    finally:
        app.stop()
    assert both >= 1, "the overlap was never observed"
    assert len(app.seen) >= ROTATIONS + 1
    return app


MODES = {"replace": replace_mode, "overlap": overlap_mode}


def assert_never_failed(app: App, kind: str, mode: str) -> None:
    """Not one login or query of the application failed (the counts are logged either way)."""
    log.info(
        "%s %s: %d credentials, %d logins (%d failed), %d queries (%d failed)",
        kind,
        mode,
        len(app.seen),
        app.logins,
        app.failed_logins,
        app.queries,
        app.failed_queries,
    )
    assert (app.failed_logins, app.failed_queries) == (0, 0), (app.logins, app.queries)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql"])
def test_ssm_application_survives_three_rotations(
    keyturn: KeyturnServer, request: pytest.FixtureRequest, kind: str, mode: str
) -> None:
    engine = engine_for(keyturn, request, kind, kms=False)
    client = ssm_sdk(keyturn.endpoint)
    name = f"app-{kind}-{secrets.token_hex(3)}"
    engine.prepare("apploop")
    product = {"redis": "Redis", "postgres": "PostgreSQL", "mysql": "Mysql"}[kind]
    tags = [{"TagKey": "keyturn:overlap", "TagValue": f"{OVERLAP}s"}] if mode == "overlap" else []
    ssm_create(
        client, name, product=product, instance_id=engine.instance_id, prefix="apploop", Tags=tags
    )
    app = MODES[mode](
        engine, lambda: ssm_credential(client, name), lambda: ssm_rotate(client, name)
    )
    assert_never_failed(app, kind, mode)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kind", ["redis", "postgres", "mysql"])
def test_kms_application_survives_three_rotations(
    keyturn: KeyturnServer, request: pytest.FixtureRequest, kind: str, mode: str
) -> None:
    engine = engine_for(keyturn, request, kind, kms=True)
    client = kms_sdk(keyturn.endpoint)
    name = f"app-{kind}-{secrets.token_hex(3)}"
    engine.prepare("apploopkms")
    custom = {"Overlap": f"{OVERLAP}s"} if mode == "overlap" else {}
    kms_create(
        client,
        name,
        secret_type="Redis" if kind == "redis" else "Rds",
        instance_id=engine.instance_id,
        account="apploopkms",
        custom=custom,
    )

    def fetch() -> Credential:
        user, password, _ = kms_value(client, name)
        return user, password

    app = MODES[mode](engine, fetch, lambda: kms_rotate(client, name))
    assert_never_failed(app, kind, mode)
