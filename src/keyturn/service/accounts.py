"""Account use cases beyond a reset: create an account, and change a password by proving the
old one, with the vendors' lock after repeated wrong old passwords.

A creation is applied node by node and verified by a login on every node; a failure drops the
account again from the nodes it reached, so nothing is half-created. A change checks the old
password against the engine (never against anything keyturn stored), counts wrong ones per
account in a ``ChangeGuard`` and, once the old password is right, runs as an ordinary
synchronous reset (durable task, verify on every node, rollback). Protected accounts
(``keyturn.service.protection``) are refused before an old password is even looked at, and an
account keyturn logs in with is never created over.

The guard is race-free: the old passwords of one account are checked one at a time, in arrival
order (a concurrent attempt waits for the one before it, as a vendor serializes operations on
one account), and each attempt is counted before the engine is asked. So a burst of guesses
gets at most five evaluated; the rest find the account locked. The counts and the lock live in
the store, so this holds across nodes and restarts too.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from keyturn.core.engine_ports import EngineRegistry
from keyturn.core.errors import DomainError, UnsupportedFeature
from keyturn.core.model import Instance, Product
from keyturn.core.passwords import PasswordPolicy
from keyturn.core.ports import Clock
from keyturn.core.secrets import Secret
from keyturn.core.store_ports import ChangeLockRepo, Store
from keyturn.service import protection
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


@dataclass(slots=True)
class _Turn:
    lock: asyncio.Lock
    users: int = 0


class ChangeGuard:
    """Count consecutive wrong old passwords per account; lock changes after too many.

    ``turn`` serializes the attempts on one account in this process and ``attempt`` counts one
    before it is evaluated, so concurrent guesses cannot all pass the check before any is
    counted. The counts and locks are the store's (``ChangeLockRepo``): shared by every node
    and kept across restarts, and counted atomically there, so guesses spread over several
    nodes get no more evaluations than guesses sent to one.
    """

    def __init__(
        self,
        repo: ChangeLockRepo,
        clock: Clock,
        *,
        max_failures: int = MAX_FAILURES,
        lock_seconds: int = LOCK_SECONDS,
    ) -> None:
        self._repo = repo
        self._clock = clock
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self._turns: dict[tuple[str, ...], _Turn] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: tuple[str, ...]) -> AsyncIterator[None]:
        """Hold the account's one evaluation slot; waiters get it in arrival order. The entry
        goes with its last user, so the table holds only accounts being changed."""
        entry = self._turns.get(key)
        if entry is None:
            entry = self._turns[key] = _Turn(asyncio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._turns[key]

    async def attempt(self, key: tuple[str, ...]) -> bool:
        """Count an attempt before its old password is evaluated (call it inside ``turn``);
        ``missed``, ``refund`` or ``succeeded`` settles it. False (nothing counted): changes
        are locked, or as many attempts as allowed are being evaluated (on other nodes)."""
        return await self._repo.count_attempt(
            _name(key), max_failures=self.max_failures, now=self._clock.now()
        )

    async def missed(self, key: tuple[str, ...]) -> int:
        """The counted attempt was a wrong old password: lock once it was the last one
        allowed; the attempts left (0: changes are now locked)."""
        now = self._clock.now()
        return await self._repo.missed_attempt(
            _name(key),
            max_failures=self.max_failures,
            now=now,
            lock_until=now + timedelta(seconds=self.lock_seconds),
        )

    async def refund(self, key: tuple[str, ...]) -> None:
        """The counted attempt was not a wrong password (the engine failed, or the account
        has no password): it does not count."""
        await self._repo.refund_attempt(_name(key))

    async def seconds_locked(self, key: tuple[str, ...]) -> float:
        """Seconds until changes unlock; 0 when not locked."""
        now = self._clock.now()
        until = await self._repo.locked_until(_name(key), now=now)
        return 0.0 if until is None else max(0.0, (until - now).total_seconds())

    async def failed(self, key: tuple[str, ...]) -> int:
        """Record a wrong old password at once (``attempt`` and ``missed`` together); the
        attempts left (0 means changes are now locked)."""
        if not await self.attempt(key):
            return 0
        return await self.missed(key)

    async def succeeded(self, key: tuple[str, ...]) -> None:
        await self._repo.clear_attempts(_name(key), now=self._clock.now())


def _name(key: tuple[str, ...]) -> str:
    """The store's name of an account's key: its parts, which never hold a NUL, joined."""
    return "\0".join(key)


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
        # An existing account is never changed (AccountExists), but keyturn's own login name
        # is refused outright, even on a node where it does not exist yet.
        protection.check(instance, account)
        policy.check(password.reveal())
        engine = self._engines.engine(instance.engine)
        # Every data node as it is now (a cluster's too), not only the declared ones.
        nodes = (await engine.discover(instance)).nodes
        created = []
        try:
            for node in nodes:
                await engine.create_account(node, account, password, read_only=read_only)
                created.append(node)
            for node in nodes:
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
        locked = await self._guard.seconds_locked(key)
        if locked:
            return self._locked(locked)
        policy.check(new.reveal())
        # Before any old password is evaluated: a protected account is no guessing target.
        await self._resets.check_protected(instance, account)
        async with self._guard.turn(key):
            outcome = await self._evaluate(caller, instance, key, account, old)
        if outcome is not None:
            return outcome
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

    async def _evaluate(
        self,
        caller: Caller,
        instance: Instance,
        key: tuple[str, ...],
        account: str,
        old: Secret,
    ) -> ChangeOutcome | None:
        """Check ``old`` (inside the account's turn): None when it is right, else the outcome
        of a wrong one. The attempt is counted before the engine is asked."""
        locked = await self._guard.seconds_locked(key)
        if locked:  # the attempts before this one, while it waited, locked the account
            return self._locked(locked)
        engine = self._engines.engine(instance.engine)
        if not await self._guard.attempt(key):
            # Locked since, or the last attempts allowed are being evaluated elsewhere (another
            # node): answered as locked, which they are about to be unless one was right.
            return self._locked(await self._guard.seconds_locked(key) or self._guard.lock_seconds)
        try:
            matches = await engine.password_matches(instance.primary, account, old)
            if not matches and (await engine.probe(instance.primary, account)).password_free:
                raise UnsupportedFeature(
                    "the account is password-free: it has no old password to change; reset it"
                )
        except DomainError:
            # Not a wrong password (engine failure, password-free). A cancelled attempt stays
            # counted: its caller may have seen nothing, but it must not be free to retry.
            await self._guard.refund(key)
            raise
        if matches:
            await self._guard.succeeded(key)
            return None
        left = await self._guard.missed(key)
        log.warning(
            "wrong old password",
            extra={"request_id": caller.request_id, "instance_id": instance.id},
        )
        if left == 0:
            return self._locked(await self._guard.seconds_locked(key) or self._guard.lock_seconds)
        return ChangeOutcome(result=ChangeResult.PASSWORD_FAILED, retries_left=left)

    def _locked(self, seconds_left: float) -> ChangeOutcome:
        return ChangeOutcome(
            result=ChangeResult.LOCKED,
            retries_left=0,
            lock_minutes=self._guard.lock_seconds // 60,
            lock_minutes_left=max(1, math.ceil(seconds_left / 60)),
        )
