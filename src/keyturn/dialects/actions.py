"""What the three vendors' hooks share: a routed call's error code looked up in the product's
table over the vendor's common one, its answers, and its binding to the gate.

Every vendor answers a ``DomainError`` from two tables: the product's (authoritative for the
errors it names, parents included) over the vendor's common one, each walked from the error's
own class up its hierarchy, so a specific error falls back to its parent's entry. Tencent and
Alibaba route by product and action name (``ActionRoute``): the call's audited action is
``service:Action``, the product's ``changes`` name the mutating actions and their neutral
names, and binding hands the parsed parameters to the action's handler. Huawei routes by path
and binds with ``bound`` alone. ``ProductHooks`` answers for all three (codes, responses,
neutral names), so each vendor's hooks hold only its envelope, signatures and routing. Pure
functions and values: imports only ``keyturn.core``, ``keyturn.service`` and this package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from keyturn.core.errors import DomainError
from keyturn.dialects._wire import WireRequest, WireResponse
from keyturn.dialects.pipeline import Bound
from keyturn.service.context import Answer, Caller
from keyturn.service.facade import Services
from keyturn.service.gate import CallInfo

V = TypeVar("V")
A = TypeVar("A")
Prod = TypeVar("Prod", bound="ActionProduct")
R = TypeVar("R", bound="Routed")

#: A vendor's table: domain error class -> how the vendor answers it.
CodeTable = Mapping[type[DomainError], V]


def lookup(error: DomainError, tables: Sequence[CodeTable[V] | None], default: V) -> V:
    """The first table's entry for ``error``'s most specific class it names; ``default``
    when none does."""
    for table in tables:
        for cls in type(error).__mro__:
            if table and cls in table:
                return table[cls]
    return default


@dataclass(frozen=True, slots=True)
class ErrorTable(Generic[V]):
    """A vendor's common error table, its entry for an error no table names (``InternalError``
    and ``DomainError`` itself included: keyturn's own faults), and the code word an entry
    carries."""

    common: CodeTable[V]
    default: V
    code_of: Callable[[V], str]

    def look_up(self, error: DomainError, overrides: CodeTable[V] | None = None) -> V:
        """The entry for ``error``: the product's table (authoritative for the errors it
        names, parents included) over the common one."""
        return lookup(error, (overrides, self.common), self.default)


def bound(
    info: CallInfo, handler: Callable[[Services, Caller, A], Awaitable[Answer]], args: A
) -> Bound:
    """The gate's view of a call and its action: ``handler`` on the parsed ``args``."""

    async def invoke(services: Services, scoped: Caller) -> Answer:
        return await handler(services, scoped, args)

    return Bound(info=info, invoke=invoke)


class ActionProduct(Protocol):
    """What a product routed by action name declares (``TencentProduct``, ``AlibabaProduct``)."""

    @property
    def service(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def actions(self) -> Mapping[str, Callable[..., Awaitable[Answer]]]: ...

    @property
    def changes(self) -> Mapping[str, str]: ...

    @property
    def codes(self) -> CodeTable[Any]: ...

    def resource_name(self, region: str, tenant: str, instance: str) -> str: ...


def by_version(products: Iterable[Prod]) -> dict[str, list[Prod]]:
    """Products by API version, in the order given (a version may serve several)."""
    found: dict[str, list[Prod]] = {}
    for product in products:
        found.setdefault(product.version, []).append(product)
    return found


@dataclass(frozen=True, slots=True)
class ActionRoute(Generic[Prod, A]):
    """A call routed to one action of one product; ``A`` is the vendor's parameters."""

    product: Prod
    action: str
    handler: Callable[[Services, Caller, A], Awaitable[Answer]]

    @property
    def qualified(self) -> str:
        """``service:Action``, the name policies and the audit use."""
        return f"{self.product.service}:{self.action}"

    @property
    def neutral(self) -> str:
        """keyturn's neutral name for the change; empty for a read."""
        return self.product.changes.get(self.action, "")

    @property
    def codes(self) -> CodeTable[Any]:
        return self.product.codes

    def bind(
        self,
        vendor: str,
        args: A,
        *,
        instance_id: str | None,
        region: str,
        accounts: tuple[str, ...],
    ) -> Bound:
        info = CallInfo(
            vendor=vendor,
            action=self.qualified,
            neutral_action=self.neutral,
            mutating=self.action in self.product.changes,
            resource_name=self.product.resource_name,
            instance_id=instance_id,
            region=region,
            accounts=accounts,
        )
        return bound(info, self.handler, args)


class Routed(Protocol):
    """What the shared hooks read of a vendor's route."""

    @property
    def codes(self) -> CodeTable[Any]:
        """The product's error table."""
        ...

    @property
    def neutral(self) -> str: ...


class ProductHooks(Generic[R, V]):
    """The ``VendorHooks`` every vendor answers alike, from its ``errors`` and its two
    response shapes: ``respond`` (an answer's fields) and ``respond_error`` (an error and its
    entry). A vendor's hooks subclass it and add their envelope, signature and routing."""

    errors: ErrorTable[V]

    @staticmethod
    def respond(payload: dict[str, Any], request_id: str) -> WireResponse:
        raise NotImplementedError

    def respond_error(
        self, error: DomainError, entry: V, request_id: str, request: WireRequest
    ) -> WireResponse:
        raise NotImplementedError

    def early_route(self, request: WireRequest) -> R | None:
        return None  # routed after authentication, the pipeline's usual order

    def neutral_action(self, route: R | None) -> str:
        return route.neutral if route is not None else ""

    def entry(self, error: DomainError, route: R | None) -> V:
        return self.errors.look_up(error, route.codes if route is not None else None)

    def code(self, error: DomainError, route: R | None) -> str:
        return self.errors.code_of(self.entry(error, route))

    def render(self, answer: Answer, request_id: str, request: WireRequest) -> WireResponse:
        return self.respond(answer.payload, request_id)

    def render_error(
        self, error: DomainError, route: R | None, request_id: str, request: WireRequest
    ) -> WireResponse:
        return self.respond_error(error, self.entry(error, route), request_id, request)
