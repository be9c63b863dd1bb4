"""What a Tencent product module declares: its service name, API version, action table and
error-code overrides. Adding a product means adding one module that builds a ``TencentProduct``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from keyturn.core.errors import DomainError
from keyturn.dialects.tencent.params import Params
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services

#: An action: typed parameters in, the ``Response`` fields out (``RequestId`` is added later).
Handler = Callable[[Services, Caller, Params], Awaitable[Answer]]
#: The accounts an action changes, read leniently from its parameters (the handler validates
#: them): policies may name them (``.../instance/ID/account/NAME``).
AccountsOf = Callable[[Params], tuple[str, ...]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TencentProduct:
    #: The TC3 credential scope's service, e.g. ``redis``; also the host prefix.
    service: str
    version: str
    actions: Mapping[str, Handler]
    codes: Mapping[type[DomainError], str] = field(default_factory=dict)
    #: The parameter naming the instance an action targets (for policies and audit).
    instance_param: str = "InstanceId"
    #: Actions that change something -> keyturn's neutral name for the change.
    changes: Mapping[str, str] = field(default_factory=dict)
    #: Actions that change named accounts -> how to read the accounts from their parameters.
    accounts: Mapping[str, AccountsOf] = field(default_factory=dict)
    #: The kind of resource ``instance_param`` names in CAM resources (``secret`` for SSM).
    resource_kind: str = "instance"

    def resource_name(self, region: str, tenant: str, instance: str) -> str:
        """CAM's resource name: ``qcs::redis:ap-guangzhou:uin/1300000001:instance/crs-x``
        (``qcs::ssm:ap-guangzhou:uin/1300000001:secret/NAME`` for SSM secrets)."""
        return f"qcs::{self.service}:{region}:uin/{tenant}:{self.resource_kind}/{instance}"
