"""What the task takeover end-to-end tests share (one data dir for two nodes, or a cluster on
PostgreSQL): an Alibaba instance with an application account, a synchronous
``ResetAccountPassword`` of it waiting in a thread while its task changes hands, and the check
that exactly the reported password logs in on every replicated node."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

from keyturn.core.model import Product
from tests.support.alibaba_sdk import KvstoreSdk
from tests.support.logins import can_login
from tests.support.passwords import new_password
from tests.support.redis_server import RedisServer


def kvstore_with_app_user(
    add_instance: Callable[..., None], server: RedisServer, user: str
) -> tuple[str, str]:
    """An Alibaba KVStore instance of ``server`` registered through ``add_instance`` (a node's
    or a cluster's), with ``user`` made on ``server`` first: (instance id, its password)."""
    instance_id = "r-" + secrets.token_hex(7)
    password = new_password()
    server.command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-@dangerous")
    add_instance(
        instance_id, [server.admin_url()], product=Product.ALIBABA_KVSTORE, region="cn-hangzhou"
    )
    return instance_id, password


def reset_in_background(
    sdk: KvstoreSdk, instance_id: str, user: str, password: str
) -> tuple[threading.Thread, list[object]]:
    """A started thread making the synchronous call, and the list its one answer (the
    response, or the exception the SDK raised) is appended to."""
    answers: list[object] = []

    def call() -> None:
        try:
            answers.append(
                sdk.call(
                    "ResetAccountPassword",
                    InstanceId=instance_id,
                    AccountName=user,
                    AccountPassword=password,
                )
            )
        except Exception as exc:  # reported by the caller's assertion
            answers.append(exc)

    waiting = threading.Thread(target=call)
    waiting.start()
    return waiting, answers


def assert_only_reported_logs_in(
    nodes: list[RedisServer], reported: str | None, other: str | None
) -> None:
    assert all(can_login(r.port, reported) for r in nodes)
    assert not any(can_login(r.port, other) for r in nodes)
