"""What a Huawei product module declares: its REST routes (method, path template, handler) and
its error-code overrides. Adding an API means adding one ``Route``; adding a product means one
module that builds a ``HuaweiProduct``.

A path template such as ``/v2/{project_id}/instances/{instance_id}`` matches one non-empty
segment per ``{name}``; every template starts with ``/{version}/{project_id}/`` so the dialect
can check the project against the caller's before any handler runs.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from keyturn.core.errors import DomainError
from keyturn.dialects._wire import WireRequest
from keyturn.dialects.huawei.errors import HuaweiCode
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services

_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A routed, authenticated request: its path parameters and the raw request."""

    params: Mapping[str, str]
    request: WireRequest


#: A handler: the call in, the JSON object to answer with (HTTP 200) out.
Handler = Callable[[Services, Caller, Call], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    handler: Handler
    #: IAM's action name, e.g. ``dcs:instance:modifyAuthInfo`` (for policies and audit).
    action: str = ""
    #: keyturn's neutral name for the change; empty for reads.
    neutral: str = ""
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.template.startswith("/v2/{project_id}/"):
            raise ValueError(f"route {self.template} does not start with /v2/{{project_id}}/")
        parts = _PARAM.split(self.template)
        # split() alternates literal text and parameter names.
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
        )
        object.__setattr__(self, "pattern", re.compile(f"^{regex}/?$"))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        return found.groupdict() if found else None


@dataclass(frozen=True, slots=True, kw_only=True)
class HuaweiProduct:
    name: str
    routes: Sequence[Route]
    codes: Mapping[type[DomainError], HuaweiCode] = field(default_factory=dict)

    def resource_name(self, region: str, project: str, instance: str) -> str:
        """IAM's resource name: ``dcs:cn-north-4:<project id>:instance:<instance id>``."""
        return f"{self.name}:{region}:{project}:instance:{instance}"
