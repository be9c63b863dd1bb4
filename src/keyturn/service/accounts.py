"""Account use cases beyond a reset: create an account, and change a password by proving the
old one, with the vendors' lock after repeated wrong old passwords.

A creation is applied node by node and verified by a login on every node; a failure drops the
account again from the nodes it reached, so nothing is half-created. A change checks the old
password against the engine (never against anything keyturn stored), counts wrong ones per
account in a ``ChangeGuard`` and, once the old password is right, runs as an ordinary
synchronous reset (durable task, verify on every node, rollback).
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

from keyturn.core.errors import DomainError, UnsupportedFeature
from keyturn.core.model import Product
from keyturn.core.passwords import PasswordPolicy
from keyturn.core.ports import Clock, EngineRegistry, Store
from keyturn.core.secrets import Secret
from keyturn.service.context import Caller
from keyturn.service.queries import owned_instance
from keyturn.service.resets import Resets

log = logging.getLogger(__name__)

#: Huawei DCS documents it: 5 wrong old passwords in a row lock changes for 5 minutes.
MAX_FAILURES = 5
LOCK_SECONDS = 300


class ChangeResult(enum.StrEnum):
    """How a change with an old password ended (Huawei's ``result`` values)."""

    SUCCESS = "success"
    PASSWORD_FAILED = "passwordFailed"
    LOCKED = "locked"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeOutcome:
    result: ChangeResult
    retries_left: int
    #: The lock's duration in minutes once a lock applies, else 0.
    lock_minutes: int = 0
    lock_minutes_left: int = 0


class ChangeGuard:
    """Count consecutive wrong old passwords per account; lock changes after too many.

    Kept in this process's memory: a restart lifts locks, which errs towards availability.
    """

    def __init__(
        self, clock: Clock, *, max_failures: int = MAX_FAILURES, lock_seconds: int = LOCK_SECONDS
    ) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self._failures: dict[tuple[str, ...], int] = {}
        self._locked_until: dict[tuple[str, ...], float] = {}

    def seconds_locked(self, key: tuple[str, ...]) -> float:
        """Seconds until changes unlock; 0 when not locked."""
        until = self._locked_until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock.now().timestamp()
        if left <= 0:
            del self._locked_until[key]
            return 0.0
        return left

    def failed(self, key: tuple[str, ...]) -> int:
        """Record a wrong old password; the attempts left (0 means changes are now locked)."""
        count = self._failures.get(key, 0) + 1
        if count >= self.max_failures:
            self._failures.pop(key, None)
            self._locked_until[key] = self._clock.now().timestamp() + self.lock_seconds
            return 0
        self._failures[key] = count
        return self.max_failures - count

    def succeeded(self, key: tuple[str, ...]) -> None:
        self._failures.pop(key, None)


class Accounts:
    """Create accounts and change passwords with proof of the old one."""

    def __init__(
        self, store: Store, engines: EngineRegistry, resets: Resets, guard: ChangeGuard
    ) -> None:
        self._store = store
        self._engines = engines
        self._resets = resets
        self._guard = guard

    async def create(
        self,
        caller: Caller,
        *,
        product: Product,
        instance_id: str,
        account: str,
        password: Secret,
        policy: PasswordPolicy,
        read_only: bool,
    ) -> None:
        """Create ``account`` on every node and prove its login there; all or nothing."""
        instance = await owned_instance(self._store, caller, product, instance_id)
        policy.check(password.reveal())
        engine = self._engines.engine(instance.engine)
        created = []
        try:
            for node in instance.nodes:
                await engine.create_account(node, account, password, read_only=read_only)
                created.append(node)
            for node in instance.nodes:
                await engine.verify(node, account, password)
        except DomainError:
            for node in reversed(created):
                try:
                    await engine.drop_account(node, account)
                except DomainError as exc:
                    log.error(
                        "could not drop a half-created account on %s: %s", node.key, exc.message
                    )
            raise
        log.info(
            "account created",
            extra={"request_id": caller.request_id, "instance_id": instance.id},
        )

    async def change_password(
        self,
        caller: Caller,
        *,
        product: Product,
        instance_id: str,
        account: str,
        old: Secret,
        new: Secret,
        policy: PasswordPolicy,
        differ_from_current: bool = False,
    ) -> ChangeOutcome:
        """Change ``account``'s password to ``new`` if ``old`` is its current one."""
        instance = await owned_instance(self._store, caller, product, instance_id)
        key = (caller.tenant_id, instance.id, account)
        locked = self._guard.seconds_locked(key)
        if locked:
            return self._locked(locked)
        policy.check(new.reveal())
        engine = self._engines.engine(instance.engine)
        if not await engine.password_matches(instance.primary, account, old):
            info = await engine.probe(instance.primary, account)
            if info.password_free:
                raise UnsupportedFeature(
                    "the account is password-free: it has no old password to change; reset it"
                )
            left = self._guard.failed(key)
            log.warning(
                "wrong old password",
                extra={"request_id": caller.request_id, "instance_id": instance.id},
            )
            if left == 0:
                return self._locked(self._guard.seconds_locked(key))
            return ChangeOutcome(result=ChangeResult.PASSWORD_FAILED, retries_left=left)
        self._guard.succeeded(key)
        await self._resets.reset_password_and_wait(
            caller,
            product=product,
            instance_id=instance.id,
            account=account,
            password=new,
            policy=policy,
            differ_from_current=differ_from_current,
        )
        return ChangeOutcome(result=ChangeResult.SUCCESS, retries_left=self._guard.max_failures)

    def _locked(self, seconds_left: float) -> ChangeOutcome:
        return ChangeOutcome(
            result=ChangeResult.LOCKED,
            retries_left=0,
            lock_minutes=self._guard.lock_seconds // 60,
            lock_minutes_left=max(1, math.ceil(seconds_left / 60)),
        )
