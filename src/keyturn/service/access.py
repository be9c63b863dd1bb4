"""What one authenticated call may touch, resource by resource.

The gate authorizes a call against the resource it names up front. Some calls name no single
resource: listings (``DescribeInstances``), task reads by task id (``DescribeTaskInfo``), batch
changes. Their answer must never hold what the key's policies would deny, whatever region or
instance the request itself claims, so the gate hands the handler an ``Access``: the key's
parsed policies, the action, and the vendor's resource-name builder, and reads and listings ask
``allows(instance)`` item by item. A key without policies is its tenant's administrator and its
``Access`` allows everything without evaluating anything (the common, fast case).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keyturn.core.access import Policy, decide_any

#: (region, tenant id, instance id or "*") -> the vendor's resource name.
ResourceName = Callable[[str, str, str], str]
#: (instance resource name, account) -> the vendor's resource name of one account of it.
AccountResource = Callable[[str, str], str]


def account_resource(instance_resource: str, account: str) -> str:
    """The account form most vendors use: ``<instance resource>/account/<name>``."""
    return f"{instance_resource}/account/{account}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Access:
    """The resources one call may touch; ``policies`` None: the tenant's administrator."""

    tenant_id: str = ""
    action: str = ""
    policies: tuple[Policy, ...] | None = None
    resource_name: ResourceName | None = None
    account_form: AccountResource = account_resource

    @property
    def unrestricted(self) -> bool:
        return self.policies is None

    def resources(self, region: str, instance_id: str, accounts: Sequence[str] = ()) -> list[str]:
        """The names a decision on ``instance_id`` (and each of ``accounts``) is taken on."""
        assert self.resource_name is not None
        instance = self.resource_name(region, self.tenant_id, instance_id)
        if not accounts:
            return [instance]
        return [instance, *(self.account_form(instance, account) for account in accounts)]

    def allows(self, region: str, instance_id: str, accounts: Sequence[str] = ()) -> bool:
        """Whether the call's action is allowed on the instance (and on every account)."""
        if self.policies is None:
            return True
        assert self.resource_name is not None
        instance = self.resource_name(region, self.tenant_id, instance_id)
        if not accounts:
            return decide_any(self.policies, self.action, [instance]).allowed
        return all(
            decide_any(
                self.policies, self.action, [instance, self.account_form(instance, account)]
            ).allowed
            for account in accounts
        )


#: The access of callers that are not API keys (the CLI, tests): everything.
UNRESTRICTED = Access()
