"""The Huawei dialect without I/O: fake services that record what the dialect asks of them,
and requests signed with SDK-HMAC-SHA256 as the SDK signs them (for unit tests of the dialect
and of the refusals every dialect audits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from keyturn.core import errors as e
from keyturn.core.metrics import NO_METRICS
from keyturn.core.model import AccessKey, EngineKind, Instance, Node, NodeAddress, Product
from keyturn.core.secrets import Secret
from keyturn.core.tasks import Task, TaskState
from keyturn.dialects._wire import WireRequest
from keyturn.dialects.huawei.signing import (
    canonical_request,
    parse_authorization,
    signature,
    string_to_sign,
)
from keyturn.service.accounts import ChangeOutcome, ChangeResult
from tests.support.fakes import FakeClock, QueuedTask, fake_task, memory_replay_guard

AK, SK, PROJECT = "HWAKUNIT0001", "unit-secret", "0123456789abcdef0123456789abcdef"
INSTANCE_ID = "6d1d7a5c-1111-2222-3333-444455556666"
NOW = datetime(2026, 11, 22, 11, 14, 45, tzinfo=UTC)


class FakeServices:
    """The parts of ``Services`` the dialect uses, recording calls."""

    def __init__(self) -> None:
        self.clock = FakeClock(NOW)
        self.replay = memory_replay_guard(self.clock)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.error: Exception | None = None
        self.outcome = ChangeOutcome(result=ChangeResult.SUCCESS, retries_left=5)
        self.credentials = SimpleNamespace(access_key=self._access_key)
        self.resets = SimpleNamespace(reset_password_and_wait=self._record("reset"))
        self.accounts = SimpleNamespace(change_password=self._record("change"))
        self.queries = SimpleNamespace(
            instance=self._instance, instances=self._instances, task=self._task
        )
        self.refusals: list[dict[str, Any]] = []
        self.gate = SimpleNamespace(run=self._through_gate, rejected=self._refused)
        self.metrics = NO_METRICS

    @staticmethod
    async def _through_gate(
        caller: Any, info: Any, execute: Any, vendor_code: Any, admission: Any = None
    ) -> Any:
        if admission is not None:
            await admission.admit()
        return await execute(caller)

    async def _refused(self, caller: Any, **fields: Any) -> None:
        self.refusals.append({"caller": caller, **fields})

    async def _access_key(self, key_id: str) -> AccessKey:
        if key_id != AK:
            raise e.UnknownAccessKey(f"the access key {key_id!r} does not exist or is disabled")
        return AccessKey(id=AK, tenant_id=PROJECT, secret=Secret(SK))

    def _record(self, name: str) -> Any:
        async def call(caller: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            if self.error is not None:
                raise self.error
            return QueuedTask() if name == "reset" else self.outcome

        return call

    async def _instance(self, caller: Any, product: Product, instance_id: str) -> Instance:
        if instance_id != INSTANCE_ID or caller.tenant_id != PROJECT:
            raise e.InstanceNotFound()
        return make_instance()

    async def _instances(self, caller: Any, **kwargs: Any) -> tuple[list[Instance], int]:
        self.calls.append(("instances", kwargs))
        return [make_instance()], 1

    async def _task(self, caller: Any, task_id: int) -> Task:
        if task_id != 7:
            raise e.TaskNotFound()
        return fake_task(
            7,
            tenant_id=PROJECT,
            instance_id=INSTANCE_ID,
            state=TaskState.FAILED,
            message="node 127.0.0.1:6379 refused the login",
            created_at=NOW,
            started_at=NOW,
            finished_at=NOW + timedelta(seconds=1, microseconds=250_000),
        )


def make_instance() -> Instance:
    address = NodeAddress(
        engine=EngineKind.REDIS,
        scheme="redis",
        host="127.0.0.1",
        port=6379,
        username="default",
        password=Secret("admin-password"),
    )
    return Instance(
        id=INSTANCE_ID,
        tenant_id=PROJECT,
        product=Product.HUAWEI_DCS,
        region="cn-north-4",
        name="orders",
        nodes=(Node(instance_id=INSTANCE_ID, ordinal=0, address=address),),
        no_auth=False,
        engine_version="7.0.15",
        created_at=NOW,
    )


def signed_headers(
    method: str,
    path: str,
    query: str,
    body: bytes,
    *,
    date: datetime = NOW,
    secret: str = SK,
    ak: str = AK,
    project: str | None = PROJECT,
    host: str = "keyturn.test",
) -> dict[str, str]:
    """The lower-case headers of a request signed as the SDK signs it (``path`` is the decoded
    path the server sees)."""
    headers = {
        "content-type": "application/json;charset=utf-8",
        "host": host,
        "x-sdk-date": date.strftime("%Y%m%dT%H%M%SZ"),
    }
    if project is not None:
        headers["x-project-id"] = project
    names = ";".join(sorted(headers))
    template = f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={names}, Signature={'0' * 64}"
    canonical = canonical_request(
        method=method,
        path=path,
        query=query,
        headers=headers,
        signed_headers=parse_authorization(template).signed_headers,
        body=body,
    )
    sig = signature(secret, string_to_sign(canonical, date))
    headers["authorization"] = template.replace("0" * 64, sig)
    return headers


def request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    query: str = "",
    authorization: str | None = None,
    **signing: Any,
) -> WireRequest:
    """A signed ``WireRequest`` (``signing``: see ``signed_headers``); ``authorization``
    replaces the signed header."""
    headers = signed_headers(method, path, query, body, **signing)
    if authorization is not None:
        headers["authorization"] = authorization
    return WireRequest(method=method, path=path, query=query, headers=headers, body=body)


def reset_path(project: str = PROJECT, instance_id: str = INSTANCE_ID) -> str:
    return f"/v2/{project}/instances/{instance_id}/password/reset"
