"""The gate every authenticated API call passes: authorization, rate limit and audit.

The signed-call pipeline authenticates a request and routes it, then hands the gate a
``CallInfo`` (vendor, qualified action, the instance and accounts it targets, whether it
changes anything), an admission check (the replay check) and the action to run. The gate
builds the vendor resource name (with the instance's real region when the caller owns it),
evaluates the key's policies (a key without policies is its tenant's administrator; explicit
deny wins; no matching allow denies; an account-level resource ``.../account/NAME`` is decided
with its instance's), takes a token from the tenant's rate limit for the action, admits the
call, and audits: a change is recorded as ``started`` *before* it runs — if that record cannot
be written the change is not made — and every call is recorded with its outcome, vendor error
code and task id. A call that names no instance (a listing, a task read by id) passes when some
statement allows its action; the action then gets the caller's ``Access`` and authorizes each
item it would return. Requests refused before the gate (authentication, routing, malformed
requests) are audited by ``rejected``, unauthenticated ones within a per-source budget.
Every audit append is timed (``keyturn.core.metrics``: ``audit_append``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from keyturn.core.access import Policy, allows_action, decide_any
from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.core.errors import (
    AccessDenied,
    DomainError,
    InternalError,
    NotFound,
    RequestThrottled,
    StoreUnavailable,
)
from keyturn.core.metrics import NO_METRICS, Metrics
from keyturn.core.model import Instance
from keyturn.core.ports import AuditLog, Clock
from keyturn.core.store_ports import Store
from keyturn.service.access import (
    UNRESTRICTED,
    Access,
    AccountResource,
    ResourceName,
    account_resource,
)
from keyturn.service.context import Answer, Caller
from keyturn.service.credentials import Credentials
from keyturn.service.ratelimit import RateLimiter

log = logging.getLogger(__name__)


@lru_cache(maxsize=1024)
def _parsed(document: str) -> Policy:
    return Policy.parse(document)


class Admission(Protocol):
    """The signed-call pipeline's last check before a call runs (its replay check)."""

    async def admit(self) -> None:
        """Refuse the call with a ``DomainError``, or use up what admits it."""
        ...

    async def release(self) -> None:
        """The admitted call did not run after all: give back what ``admit`` used up."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CallInfo:
    vendor: str
    #: Vendor-qualified, as policies name it: ``redis:ResetPassword``, ``kvstore:...``,
    #: ``dcs:instance:modifyAuthInfo``.
    action: str
    #: keyturn's neutral name for a change (``reset_password``...); empty for reads.
    neutral_action: str
    mutating: bool
    resource_name: ResourceName
    instance_id: str | None = None
    #: The region the request names, used when the instance is not the caller's to read.
    region: str = "*"
    #: The accounts a change names (named-account APIs): each is authorized as
    #: ``account_form(instance resource, account)`` too, so policies can name accounts.
    accounts: tuple[str, ...] = ()
    account_form: AccountResource = account_resource


class Gate:
    def __init__(
        self,
        store: Store,
        credentials: Credentials,
        limiter: RateLimiter,
        audit: AuditLog,
        clock: Clock,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._credentials = credentials
        self._limiter = limiter
        self._audit = audit
        self._clock = clock
        self._rejections = RejectionBudget()
        self._throttled = RejectionBudget(per_source=5, overall=200, window=1.0)

    async def run(
        self,
        caller: Caller,
        call: CallInfo,
        execute: Callable[[Caller], Awaitable[Answer]],
        vendor_code: Callable[[DomainError], str],
        *,
        admission: Admission | None = None,
    ) -> Answer:
        """Authorize, limit, admit (the pipeline's replay check), audit and run ``execute``
        with the caller's ``Access``; its answer, or its error re-raised. A call refused here
        is recorded ``denied`` and changed nothing."""
        region, instance = await self._region(caller, call)
        resource = call.resource_name(region, caller.tenant_id, call.instance_id or "*")
        event = self._event(caller, call, resource)
        # A change's nonce and its "started" record are written as one unit of work: one
        # durable commit for both (instead of one each), still before the change runs.
        unit = self._store.writes_together() if call.mutating else contextlib.nullcontext()
        admitted_call = False
        try:
            async with unit:
                access, admitted = await self._admit(
                    caller, call, region, event, vendor_code, admission
                )
                admitted_call = True
                if call.mutating:
                    # Fail-closed: a change whose record cannot be written is not made.
                    started = replace(event, outcome=AuditOutcome.STARTED)
                    await self._append(started, required=True, at=admitted)
        except DomainError:
            # The record (or the unit's commit) failed after the admission: what it used up
            # (a nonce) is given back, so the very same request may come again.
            if admitted_call and admission is not None:
                await admission.release()
            raise
        # A change's new task row and its outcome record: one more unit, durable before the
        # answer (one commit for both). Only writes that opt in are deferred (the task row,
        # audit records); anything else the action writes is durable on return as always.
        unit = self._store.writes_together() if call.mutating else contextlib.nullcontext()
        async with unit:
            return await self._outcome(
                event,
                lambda: execute(replace(caller, access=access, instance=instance)),
                lambda error: (AuditOutcome.FAILED, vendor_code(error)),
            )

    async def _admit(
        self,
        caller: Caller,
        call: CallInfo,
        region: str,
        event: AuditEvent,
        vendor_code: Callable[[DomainError], str],
        admission: Admission | None,
    ) -> tuple[Access, datetime]:
        """Authorize, limit and admit the call: its ``Access`` and the instant it was admitted
        at. A call refused here is recorded ``denied`` and changed nothing."""
        try:
            access = await self._authorize(caller, call, region)
            # The change is admitted in this instant's window, and its "started" record bears
            # the same instant: the audit log shows per second what the limiter counted (the
            # record's write, after the replay check and the store's round trips, may fall
            # into the next second on a busy node).
            admitted = self._clock.now()
            await self._limiter.take(
                caller.tenant_id, call.action, mutating=call.mutating, at=admitted
            )
            if admission is not None:
                await admission.admit()
        except RequestThrottled as error:
            # A flood over the limit must not turn into a flood of durable writes: a few
            # records per tenant and action each second, the rest counted in the log.
            key = f"{caller.tenant_id}:{call.action}"
            if self._throttled.admit(key, time.monotonic()):
                await self._record(replace(event, outcome=AuditOutcome.DENIED), error, vendor_code)
            raise
        except DomainError as error:
            await self._record(replace(event, outcome=AuditOutcome.DENIED), error, vendor_code)
            raise
        return access, admitted

    async def run_admin(
        self,
        caller: Caller,
        *,
        action: str,
        resource: str,
        mutating: bool,
        execute: Callable[[], Awaitable[Answer]],
        authorize: Callable[[], None] | None = None,
    ) -> Answer:
        """Audit an admin API call (``vendor`` ``admin``, ``action`` like
        ``admin:ListInstances``, ``caller.key_id`` the admin token's id) around ``execute``,
        fail-closed for changes as ``run``: a change whose ``started`` record cannot be written
        is not made. The admin token is its scope's administrator, so no policy applies; an
        ``AccessDenied`` (a scoped token asking for what needs every tenant: ``authorize``
        raises it before anything is recorded as started) is ``denied``."""
        event = AuditEvent(
            at=self._clock.now(),
            tenant_id=caller.tenant_id,
            key_id=caller.key_id,
            source_ip=caller.source_ip,
            user_agent=caller.user_agent,
            vendor="admin",
            action=action,
            neutral_action="",
            resource=resource,
            outcome=AuditOutcome.STARTED,
            request_id=caller.request_id,
        )
        try:
            if authorize is not None:
                authorize()
        except AccessDenied as error:
            await self._append(replace(event, outcome=AuditOutcome.DENIED, error_code=error.code))
            raise
        if mutating:
            await self._append(event, required=True)
        return await self._outcome(event, execute, _admin_outcome)

    async def _outcome(
        self,
        event: AuditEvent,
        execute: Callable[[], Awaitable[Answer]],
        failure: Callable[[DomainError], tuple[AuditOutcome, str]],
    ) -> Answer:
        """Run ``execute`` and record how it ended: ``succeeded`` with its task, or the
        outcome and error code ``failure`` gives for its domain error. keyturn's own fault
        (the front end logs and renders it) is recorded as the internal error the caller gets,
        so a ``started`` record never stands alone."""
        try:
            answer = await execute()
        except DomainError as error:
            outcome, code = failure(error)
            await self._append(replace(event, outcome=outcome, error_code=code))
            raise
        except Exception:
            outcome, code = failure(InternalError())
            await self._append(replace(event, outcome=outcome, error_code=code))
            raise
        task = "" if answer.task_id is None else str(answer.task_id)
        await self._append(replace(event, outcome=AuditOutcome.SUCCEEDED, task_id=task))
        return answer

    async def rejected(
        self,
        caller: Caller,
        *,
        vendor: str,
        action: str,
        code: str,
        neutral_action: str = "",
        resource: str = "",
    ) -> None:
        """Audit a call refused before it reached ``run``: authentication, routing, a malformed
        request. ``caller.tenant_id`` is empty when the request did not authenticate, and its
        ``key_id`` is then the key the request claimed. Those records are capped per source
        address (``RejectionBudget``): anyone can send garbage, and it must not grow the log
        without bound."""
        if not caller.tenant_id and not self._rejections.admit(
            caller.source_ip, self._clock.now().timestamp()
        ):
            return
        event = AuditEvent(
            at=self._clock.now(),
            tenant_id=caller.tenant_id,
            key_id=caller.key_id,
            source_ip=caller.source_ip,
            user_agent=caller.user_agent,
            vendor=vendor,
            action=action,
            neutral_action=neutral_action,
            resource=resource,
            outcome=AuditOutcome.DENIED,
            error_code=code,
            request_id=caller.request_id,
        )
        try:
            await self._timed_append(event)
        except StoreUnavailable:
            log.warning("could not record a refused call in the audit log: the store is down")
        except Exception:
            # Nothing was changed: a refusal that cannot be recorded is logged, not failed.
            log.exception("could not record a refused call in the audit log")

    async def _region(self, caller: Caller, call: CallInfo) -> tuple[str, Instance | None]:
        """The region of the instance the call names when the caller owns it (never the one
        the request claims), else the request's; and that instance, if it is the caller's."""
        if not call.instance_id:
            return call.region, None
        try:
            instance = await self._store.get_instance(caller.tenant_id, call.instance_id)
        except NotFound:
            return call.region, None
        return instance.region, instance

    async def _authorize(self, caller: Caller, call: CallInfo, region: str) -> Access:
        """The call's ``Access``; ``AccessDenied`` unless the key's policies allow the action
        on the instance it names (and on each account it names), or, for a call that names no
        instance, allow the action on something: its items are then authorized one by one."""
        key = await self._credentials.access_key(caller.key_id)
        if key.policies is None:
            return UNRESTRICTED
        access = Access(
            tenant_id=caller.tenant_id,
            action=call.action,
            policies=tuple(_parsed(doc) for doc in key.policies),
            resource_name=call.resource_name,
            account_form=call.account_form,
        )
        assert access.policies is not None
        if not call.instance_id:
            if not allows_action(access.policies, call.action):
                raise AccessDenied(f"{call.action}: no statement allows this action")
            return access
        instance = call.resource_name(region, caller.tenant_id, call.instance_id)
        for account in call.accounts or (None,):
            resources = (
                [instance]
                if account is None
                else access.resources(region, call.instance_id, [account])
            )
            decision = decide_any(access.policies, call.action, resources)
            if not decision.allowed:
                raise AccessDenied(f"{call.action} on {resources[-1]}: {decision.reason}")
        return access

    def _event(self, caller: Caller, call: CallInfo, resource: str) -> AuditEvent:
        return AuditEvent(
            at=self._clock.now(),
            tenant_id=caller.tenant_id,
            key_id=caller.key_id,
            source_ip=caller.source_ip,
            user_agent=caller.user_agent,
            vendor=call.vendor,
            action=call.action,
            neutral_action=call.neutral_action,
            resource=resource,
            outcome=AuditOutcome.STARTED,
            request_id=caller.request_id,
        )

    async def _record(
        self,
        event: AuditEvent,
        error: DomainError,
        vendor_code: Callable[[DomainError], str],
    ) -> None:
        await self._append(replace(event, error_code=vendor_code(error)))

    async def _append(
        self, event: AuditEvent, *, required: bool = False, at: datetime | None = None
    ) -> None:
        """Write ``event`` stamped ``at`` (default: now); a failure stops the call only when
        ``required`` (the record before a change): an outcome that cannot be recorded is
        logged, the change having happened."""
        try:
            await self._timed_append(replace(event, at=at or self._clock.now()))
        except StoreUnavailable:
            # The store is down (logged once per call by the store): the caller gets the
            # vendor's "unavailable", not a generic internal error.
            log.warning("the audit log could not be written: the store is down")
            if required:
                raise
        except Exception as exc:
            log.exception("the audit log could not be written")
            if required:
                raise InternalError("the audit log could not be written") from exc

    async def _timed_append(self, event: AuditEvent) -> None:
        started = time.perf_counter()
        try:
            await self._audit.append(event)
        finally:
            self._metrics.audit_append(time.perf_counter() - started)


def _admin_outcome(error: DomainError) -> tuple[AuditOutcome, str]:
    """An admin call's failure as recorded: a refused scope is ``denied``; codes are keyturn's
    own (the admin API has no vendor)."""
    outcome = AuditOutcome.DENIED if isinstance(error, AccessDenied) else AuditOutcome.FAILED
    return outcome, error.code


class RejectionBudget:
    """How many unauthenticated refusals the audit log records: at most ``per_source`` per
    source address and ``overall`` in all per ``window`` seconds. The rest are counted and
    reported in one log line per window, so a flood of garbage costs at most ``overall`` records
    a window, and memory is bounded by ``overall`` addresses. Authenticated refusals are always
    recorded: they name a key, and the key's owner answers for them."""

    def __init__(self, *, per_source: int = 30, overall: int = 600, window: float = 60.0) -> None:
        self._per_source = per_source
        self._overall = overall
        self._window = window
        self._started = float("-inf")
        self._counts: dict[str, int] = {}
        self._admitted = 0
        self._dropped = 0

    def admit(self, source: str, now: float) -> bool:
        if now - self._started >= self._window:
            if self._dropped:
                log.warning(
                    "audit: %d unauthenticated refusals were not recorded in the last %d s "
                    "(over %d per source address or %d in all)",
                    self._dropped,
                    self._window,
                    self._per_source,
                    self._overall,
                )
            self._started, self._admitted, self._dropped = now, 0, 0
            self._counts.clear()
        seen = self._counts.get(source, 0)
        if seen >= self._per_source or self._admitted >= self._overall:
            self._dropped += 1
            return False
        self._counts[source] = seen + 1
        self._admitted += 1
        return True
