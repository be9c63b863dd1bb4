"""What an Alibaba Cloud product module declares: its product code, API version, action table
and error-code overrides. Adding a product means adding one module that builds an
``AlibabaProduct``; the dialect routes on the version and action of each call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from keyturn.core.errors import DomainError
from keyturn.dialects.alibaba.errors import AlibabaCode
from keyturn.dialects.alibaba.params import Params
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services

#: An action: typed parameters in, the answer's fields out (``RequestId`` is added later).
Handler = Callable[[Services, Caller, Params], Awaitable[Answer]]


@dataclass(frozen=True, slots=True, kw_only=True)
class AlibabaProduct:
    #: Alibaba's product code, e.g. ``R-kvstore`` (the legacy SDK's ``RpcRequest`` product).
    code: str
    version: str
    actions: Mapping[str, Handler]
    codes: Mapping[type[DomainError], AlibabaCode] = field(default_factory=dict)
    #: RAM's service prefix for actions and resources, e.g. ``kvstore``.
    service: str = ""
    #: The parameter naming the instance an action targets (for policies and audit).
    instance_param: str = "InstanceId"
    #: Actions that change something -> keyturn's neutral name for the change.
    changes: Mapping[str, str] = field(default_factory=dict)
    #: Actions whose ``AccountName`` names the account they change: policies may name it
    #: (``acs:kvstore:REGION:ACCOUNT:instance/ID/account/NAME``).
    account_actions: frozenset[str] = frozenset()
    #: The kind of resource ``instance_param`` names in RAM resources (``secret`` for KMS).
    resource_kind: str = "instance"
    #: How the resource id is read from the parameters when it is not ``instance_param`` as
    #: is (a KMS ``SecretName`` may be the secret's ARN); None when it cannot be read.
    resource_of: Callable[[Mapping[str, str]], str | None] | None = None

    def resource_id(self, params: Mapping[str, str]) -> str | None:
        """The id of the resource a call names, for policies and the audit."""
        if self.resource_of is not None:
            return self.resource_of(params)
        return params.get(self.instance_param)

    def resource_name(self, region: str, tenant: str, instance: str) -> str:
        """RAM's resource name: ``acs:kvstore:cn-hangzhou:1234567890:instance/r-x``
        (``acs:kms:cn-hangzhou:1234567890:secret/NAME`` for KMS secrets)."""
        return f"acs:{self.service}:{region}:{tenant}:{self.resource_kind}/{instance}"
