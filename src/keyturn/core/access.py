"""Authorization policies in the clouds' shape, and their evaluation.

A policy document holds statements, each with an effect (allow or deny), actions and resources,
written as the vendors write them: Tencent CAM (``{"version": "2.0", "statement": [{"effect":
"allow", "action": ["redis:ResetPassword"], "resource": ["qcs::redis:ap-guangzhou:uin/1300000001:
instance/crs-*"]}]}``, actions also as ``name/redis:ResetPassword``), Alibaba RAM
(``Version``/``Statement``/``Effect``/``Action``/``Resource``) and Huawei IAM (the same, with
actions such as ``dcs:instance:modifyAuthInfo``; its versions ``1.1`` and ``5.0`` may leave out
``Resource``, meaning every resource). Keys are read case-insensitively and a single string
stands for a one-element list. ``*`` matches any run of characters and ``?`` one character;
actions compare case-insensitively, resources exactly except for their leading service segment
(Huawei writes ``DCS:*:*:instance:*``); in CAM's ``qcs:project:service:region:account:resource``
an empty service, region or account means any, as CAM documents. Elements keyturn cannot
honour (``Condition``, ``NotAction``, ``NotResource``, ``Principal``) are refused rather than
ignored: ignoring a condition on an allow would grant more than its author meant.

``decide`` follows the clouds' rule: an explicit deny wins, else a matching allow allows, else
the request is denied. A key without any policy is its tenant's administrator; that rule lives
with the caller (``service.gate``), not here. Keys hold an inline document and named policies of
their tenant (``KeyPolicies``); the store resolves them into document texts, each labelled with
its policy's name (``labelled``) so that a decision can say which policy decided. Pure: stdlib
only.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.model import KeySource

#: A named policy's name, as CAM, RAM and IAM allow: 1-128 letters, digits and ``+=,.@_-``.
POLICY_NAME: Final = re.compile(r"[A-Za-z0-9+=,.@_-]{1,128}")
#: The longest document accepted, in characters of JSON (the vendors allow 6,144).
MAX_DOCUMENT: Final = 16_384
#: Where a resolved document carries its policy's name (the vendors keep names outside).
NAME_FIELD: Final = "name"
#: Huawei IAM versions whose statements may leave out ``Resource`` (every resource).
_RESOURCE_OPTIONAL_VERSIONS: Final = frozenset({"1.1", "5.0"})
_STATEMENT_FIELDS: Final = frozenset({"effect", "action", "resource", "sid"})
_UNSUPPORTED: Final = frozenset({"condition", "notaction", "notresource", "principal"})
#: CAM writes actions either ``redis:ResetPassword`` or ``name/redis:ResetPassword``.
_CAM_ACTION_PREFIX: Final = "name/"


class Effect(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    effect: Effect
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    sid: str = ""

    def matches(self, action: str, resource: str) -> bool:
        return any(_pattern(p, True).fullmatch(action) for p in self.actions) and any(
            _resource_pattern(p).fullmatch(resource) for p in self.resources
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A named policy document (``name`` is empty for an inline one)."""

    name: str
    statements: tuple[Statement, ...]

    @classmethod
    def parse(cls, document: Mapping[str, Any] | str, *, name: str = "") -> Policy:
        """Read a document (a mapping or JSON text); ``InvalidParameterValue`` naming what is
        wrong, never echoing the document. Without ``name``, the document's own label (see
        ``labelled``) names it."""
        mapping = _mapping(document, name)
        fields = _folded(mapping)
        label = fields.get(NAME_FIELD)
        name = name or (label if isinstance(label, str) else "")
        raw = fields.get("statement")
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise InvalidParameterValue(f"policy {name or '(inline)'} has no statement list")
        optional = str(fields.get("version", "")) in _RESOURCE_OPTIONAL_VERSIONS
        return cls(
            name=name,
            statements=tuple(_statement(s, name, i, optional) for i, s in enumerate(raw)),
        )

    def to_document(self) -> dict[str, Any]:
        """The canonical (CAM-like, lower-case) form, for display."""
        return {
            "version": "2.0",
            "statement": [
                {"effect": str(s.effect), "action": list(s.actions), "resource": list(s.resources)}
                for s in self.statements
            ],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    allowed: bool
    #: Why, for ``keyturn policies check`` and audit: which statement decided, or that none did.
    reason: str
    #: Denied by a deny statement (not merely for want of an allow).
    explicit: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NamedPolicy:
    """A tenant's named policy, which its keys can attach; ``document`` is JSON text."""

    tenant_id: str
    name: str
    document: str
    source: KeySource = KeySource.CLI
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPolicies:
    """What is attached to a key: an inline document (JSON text) and names of its tenant's
    named policies, in order. Attached but empty grants nothing; a key with no
    ``KeyPolicies`` at all is its tenant's administrator."""

    inline: str | None = None
    names: tuple[str, ...] = ()


def decide(policies: Sequence[Policy], action: str, resource: str) -> Decision:
    """Explicit deny wins; else an allow that matches; else implicit deny."""
    allow: str | None = None
    for policy in policies:
        for i, statement in enumerate(policy.statements):
            if not statement.matches(action, resource):
                continue
            sid = f" ({statement.sid})" if statement.sid else ""
            where = f"statement {i}{sid} of policy {policy.name or '(inline)'}"
            if statement.effect is Effect.DENY:
                return Decision(
                    allowed=False, reason=f"explicitly denied by {where}", explicit=True
                )
            allow = allow or where
    if allow is not None:
        return Decision(allowed=True, reason=f"allowed by {allow}")
    if not policies:
        return Decision(
            allowed=False, reason="the key has an empty set of policies (it is no administrator)"
        )
    return Decision(allowed=False, reason="no statement allows this action on this resource")


def decide_any(policies: Sequence[Policy], action: str, resources: Sequence[str]) -> Decision:
    """``decide`` over a resource named several ways (an instance, and an account of it): an
    explicit deny of any of them wins, else an allow of any of them allows. So a statement on
    the instance covers all its accounts, and one on ``.../account/app`` covers only ``app``."""
    allowed: Decision | None = None
    for resource in resources:
        decision = decide(policies, action, resource)
        if decision.explicit:
            return decision
        if decision.allowed and allowed is None:
            allowed = decision
    return allowed or decide(policies, action, resources[0])


def allows_action(policies: Sequence[Policy], action: str) -> bool:
    """Whether some allow statement names ``action`` on any resource: the first test of a call
    that names no single resource (a listing), whose items are then authorized one by one."""
    return any(
        statement.effect is Effect.ALLOW
        and any(_pattern(p, True).fullmatch(action) for p in statement.actions)
        for policy in policies
        for statement in policy.statements
    )


def check_policy_name(name: str) -> str:
    """``name`` if it is a valid policy name, else ``InvalidParameterValue``."""
    if not POLICY_NAME.fullmatch(name):
        raise InvalidParameterValue(
            "a policy name is 1-128 letters, digits and the characters +=,.@_-"
        )
    return name


def validated_document(document: Mapping[str, Any] | str, *, name: str = "") -> str:
    """Check a document with ``Policy.parse`` and return it as compact JSON text, in the
    shape its author wrote (vendor field names kept), for storage."""
    mapping = _mapping(document, name)
    try:
        text = json.dumps(mapping, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        raise InvalidParameterValue(
            f"policy {name or '(inline)'} holds values that are not JSON"
        ) from None
    if len(text) > MAX_DOCUMENT:
        raise InvalidParameterValue(
            f"policy {name or '(inline)'} is longer than {MAX_DOCUMENT} characters"
        )
    Policy.parse(mapping, name=name)
    return text


def labelled(document: str, name: str) -> str:
    """A stored document with its policy's name inside, so that ``Policy.parse`` of the text
    alone knows it (the gate parses texts)."""
    try:
        mapping = json.loads(document)
    except ValueError:
        mapping = None
    if not isinstance(mapping, dict):
        return missing_policy(name)
    body = {k: v for k, v in mapping.items() if str(k).lower() != NAME_FIELD}
    return json.dumps({NAME_FIELD: name, **body}, separators=(",", ":"), ensure_ascii=False)


def missing_policy(name: str) -> str:
    """What a reference to a policy that no longer exists resolves to: a deny of everything,
    so that a lost deny never widens a key's permissions (fail closed)."""
    return json.dumps(
        {
            NAME_FIELD: f"{name} (missing: denies everything)",
            "statement": [{"effect": "deny", "action": "*", "resource": "*"}],
        },
        separators=(",", ":"),
    )


def _mapping(document: Mapping[str, Any] | str, name: str) -> Mapping[str, Any]:
    if isinstance(document, str):
        if len(document) > 4 * MAX_DOCUMENT:
            raise InvalidParameterValue(f"policy {name or '(inline)'} is too long")
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):
            raise InvalidParameterValue(f"policy {name or '(inline)'} is not JSON") from None
    if not isinstance(document, Mapping):
        raise InvalidParameterValue(f"policy {name or '(inline)'} must be an object")
    return document


def _folded(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in mapping.items()}


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items: Iterable[Any] = [value]
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise InvalidParameterValue(f"{what} must be a string or a list of strings")
    found = tuple(items)
    if not found or not all(isinstance(x, str) and x for x in found):
        raise InvalidParameterValue(f"{what} must be a non-empty list of strings")
    return found


def _qualified(patterns: tuple[str, ...], what: str, *, actions: bool) -> tuple[str, ...]:
    """Patterns that can match something keyturn names: ``*`` or ``service:...``."""
    out = []
    for pattern in patterns:
        if actions and pattern.lower().startswith(_CAM_ACTION_PREFIX):
            pattern = pattern[len(_CAM_ACTION_PREFIX) :]
        if pattern != "*" and ":" not in pattern:
            kind = "action" if actions else "resource"
            raise InvalidParameterValue(
                f"{what}: each {kind} must be * or vendor-qualified (with a service prefix and :)"
            )
        out.append(pattern)
    return tuple(out)


def _statement(raw: Any, name: str, index: int, resource_optional: bool) -> Statement:
    where = f"policy {name or '(inline)'} statement {index}"
    if not isinstance(raw, Mapping):
        raise InvalidParameterValue(f"{where} must be an object")
    fields = _folded(raw)
    for key in fields:
        if key in _UNSUPPORTED:
            raise InvalidParameterValue(f"{where}: the element {key} is not supported")
        if key not in _STATEMENT_FIELDS:
            raise InvalidParameterValue(f"{where}: unknown element {key[:40]!r}")
    effect = fields.get("effect")
    if not isinstance(effect, str) or effect.lower() not in (Effect.ALLOW, Effect.DENY):
        raise InvalidParameterValue(f"{where}: effect must be allow or deny")
    resource = fields.get("resource")
    if resource is None and resource_optional:
        resource = "*"
    sid = fields.get("sid", "")
    return Statement(
        effect=Effect(effect.lower()),
        actions=_qualified(_strings(fields.get("action"), f"{where}: action"), where, actions=True),
        resources=_qualified(_strings(resource, f"{where}: resource"), where, actions=False),
        sid=sid if isinstance(sid, str) else str(sid),
    )


def _translated(pattern: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


@lru_cache(maxsize=4096)
def _pattern(pattern: str, fold: bool) -> re.Pattern[str]:
    return re.compile(_translated(pattern), re.IGNORECASE | re.DOTALL if fold else re.DOTALL)


@lru_cache(maxsize=4096)
def _resource_pattern(pattern: str) -> re.Pattern[str]:
    """Exact, except the leading service segment (``qcs``, ``acs``, ``DCS``...)."""
    head, colon, rest = pattern.partition(":")
    if not colon:
        return _pattern(pattern, False)
    if head.lower() == "qcs":
        rest = _cam_defaults(rest)
    return re.compile(f"(?i:{_translated(head)}):{_translated(rest)}", re.DOTALL)


def _cam_defaults(rest: str) -> str:
    """CAM's six segments ``qcs:project:service:region:account:resource``: an empty service
    means every product, an empty region every region, an empty account the policy owner's
    own (keyturn names only the caller's own account, so: any)."""
    parts = rest.split(":", 4)
    if len(parts) != 5:
        return rest
    for i in (1, 2, 3):
        parts[i] = parts[i] or "*"
    return ":".join(parts)
