"""Authorization policies in the clouds' shape, and their evaluation.

A policy document holds statements, each with an effect (allow or deny), actions and resources,
written as the vendors write them: Tencent CAM (``{"version": "2.0", "statement": [{"effect":
"allow", "action": ["redis:ResetPassword"], "resource": ["qcs::redis:ap-guangzhou:uin/1300000001:
instance/crs-*"]}]}``), Alibaba RAM (``Version``/``Statement``/``Effect``/``Action``/``Resource``)
and Huawei IAM (the same, with actions such as ``dcs:instance:modifyAuthInfo``). Keys are read
case-insensitively and a single string stands for a one-element list. ``*`` matches any run of
characters and ``?`` one character; actions compare case-insensitively, resources exactly.

``decide`` follows the clouds' rule: an explicit deny wins, else a matching allow allows, else
the request is denied. A key without any policy is its tenant's administrator; that rule lives
with the caller (``service.gate``), not here. Pure: stdlib only.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from keyturn.core.errors import InvalidParameterValue


class Effect(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    effect: Effect
    actions: tuple[str, ...]
    resources: tuple[str, ...]

    def matches(self, action: str, resource: str) -> bool:
        return any(_match(p, action, fold=True) for p in self.actions) and any(
            _match(p, resource, fold=False) for p in self.resources
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """A named policy document (``name`` is empty for an inline one)."""

    name: str
    statements: tuple[Statement, ...]

    @classmethod
    def parse(cls, document: Mapping[str, Any] | str, *, name: str = "") -> Policy:
        """Read a document (a mapping or JSON text); ``InvalidParameterValue`` naming what is
        wrong, never echoing the document."""
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError:
                raise InvalidParameterValue(f"policy {name or '(inline)'} is not JSON") from None
        if not isinstance(document, Mapping):
            raise InvalidParameterValue(f"policy {name or '(inline)'} must be an object")
        fields = _folded(document)
        raw = fields.get("statement")
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise InvalidParameterValue(f"policy {name or '(inline)'} has no statement list")
        return cls(name=name, statements=tuple(_statement(s, name, i) for i, s in enumerate(raw)))

    def to_document(self) -> dict[str, Any]:
        """The canonical (CAM-like, lower-case) form, for storage and display."""
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


def decide(policies: Sequence[Policy], action: str, resource: str) -> Decision:
    """Explicit deny wins; else an allow that matches; else implicit deny."""
    allow: str | None = None
    for policy in policies:
        for i, statement in enumerate(policy.statements):
            if not statement.matches(action, resource):
                continue
            where = f"statement {i} of policy {policy.name or '(inline)'}"
            if statement.effect is Effect.DENY:
                return Decision(allowed=False, reason=f"explicitly denied by {where}")
            allow = allow or where
    if allow is not None:
        return Decision(allowed=True, reason=f"allowed by {allow}")
    return Decision(allowed=False, reason="no statement allows this action on this resource")


def _folded(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in mapping.items()}


def _strings(value: Any, what: str) -> tuple[str, ...]:
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) and not isinstance(value, str):
        raise InvalidParameterValue(f"{what} must be a string or a list of strings")
    found = tuple(items)
    if not found or not all(isinstance(x, str) and x for x in found):
        raise InvalidParameterValue(f"{what} must be a non-empty list of strings")
    return found


def _statement(raw: Any, name: str, index: int) -> Statement:
    where = f"policy {name or '(inline)'} statement {index}"
    if not isinstance(raw, Mapping):
        raise InvalidParameterValue(f"{where} must be an object")
    fields = _folded(raw)
    effect = str(fields.get("effect", "")).lower()
    if effect not in (Effect.ALLOW, Effect.DENY):
        raise InvalidParameterValue(f"{where}: effect must be allow or deny")
    return Statement(
        effect=Effect(effect),
        actions=_strings(fields.get("action"), f"{where}: action"),
        resources=_strings(fields.get("resource"), f"{where}: resource"),
    )


@lru_cache(maxsize=4096)
def _pattern(pattern: str, fold: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if fold else re.DOTALL)


def _match(pattern: str, value: str, *, fold: bool) -> bool:
    return _pattern(pattern, fold).fullmatch(value) is not None
