"""Inventory ``[[secrets]]``: managed secrets declared as code, parsed into ``SecretSpec``s.

The shape (issue 16)::

    [[secrets]]
    tenant = "1300000001"
    name = "orders-redis"      # the SecretName the SDKs use
    vendor = "tencent-ssm"     # or "alibaba-kms"
    instance = "crs-5a4py64p"
    account = "app"            # the account the secret holds (created when missing)
    rotation = "30d"           # period; optional begin = "02:00", window = "2h"
    overlap = "10m"            # optional: the old password keeps working this long
    drop_old = "when-unused"   # optional (overlap): drop it as soon as no session from
                               # before the rotation remains; default "at-grace-end"
    end_old_sessions = true    # optional (overlap): end those still open at the grace end

Durations are whole numbers with a unit (``s``, ``m``, ``h``, ``d``), combinable (``1d12h``);
``begin`` is a UTC time of day ``HH:MM`` (or ``HH:MM:SS``). Every error names the field. The
secret's instance must be declared in the same file, for the same tenant, of a product the
vendor serves (Tencent SSM: Tencent products; Alibaba KMS: Alibaba products); an instance the
file does not declare is checked when the server reconciles the secret. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import time, timedelta
from typing import Any, Final

from keyturn.core.errors import InvalidParameterValue
from keyturn.core.model import Product
from keyturn.core.secret_manager import (
    VENDOR_PRODUCTS,
    DropOld,
    SecretSpec,
    SecretSubType,
    SecretVendor,
)

_PART: Final = re.compile(r"(\d{1,6})([smhd])")
_DURATION: Final = re.compile(r"^(?:\d{1,6}[smhd])+$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_BEGIN: Final = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
_KEYS: Final = frozenset(
    {
        "tenant",
        "name",
        "vendor",
        "instance",
        "account",
        "rotation",
        "begin",
        "window",
        "overlap",
        "drop_old",
        "end_old_sessions",
        "description",
        "sub_type",
    }
)


def parse_duration(text: str, where: str) -> timedelta:
    """``30d``, ``2h``, ``10m``, ``45s`` or a combination such as ``1d12h``."""
    if not _DURATION.match(text):
        raise InvalidParameterValue(
            f"{where}: {text!r} is not a duration such as '30d', '12h', '10m' or '1d12h'"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def parse_begin(text: str, where: str) -> time:
    match = _BEGIN.match(text)
    if match is None:
        raise InvalidParameterValue(f"{where}: {text!r} is not a time of day such as '02:00'")
    hour, minute, second = match.groups()
    return time(int(hour), int(minute), int(second or 0))


def secret_spec(
    where: str, table: Mapping[str, Any], instances: Mapping[tuple[str, str], Product]
) -> SecretSpec:
    """One ``[[secrets]]`` table; ``instances`` maps (tenant, instance id) to the product of
    every instance the file declares. ``InvalidParameterValue`` naming the field."""
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise InvalidParameterValue(f"{where}: unknown field(s): {', '.join(unknown)}")

    def text(key: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if value is None:
            raise InvalidParameterValue(f"{where}.{key}: is required")
        if not isinstance(value, str):
            raise InvalidParameterValue(f"{where}.{key}: must be a string")
        return value

    def duration(key: str) -> timedelta | None:
        return parse_duration(text(key), f"{where}.{key}") if key in table else None

    tenant, instance = text("tenant"), text("instance")
    try:
        vendor = SecretVendor(text("vendor"))
    except ValueError:
        known = ", ".join(v.value for v in SecretVendor)
        raise InvalidParameterValue(f"{where}.vendor: must be one of: {known}") from None
    try:
        sub_type = SecretSubType(text("sub_type", SecretSubType.SINGLE_USER.value))
    except ValueError:
        raise InvalidParameterValue(
            f"{where}.sub_type: must be SingleUser or DoubleUsers"
        ) from None
    product = instances.get((tenant, instance))
    if product is None and any(iid == instance for _, iid in instances):
        raise InvalidParameterValue(
            f"{where}.instance: {instance!r} is declared for another tenant than {tenant!r}"
        )
    # An instance not in this file (added with ``keyturn instances add``) is checked when
    # the server reconciles the secret.
    if product is not None and product not in VENDOR_PRODUCTS[vendor]:
        raise InvalidParameterValue(
            f"{where}.vendor: {vendor.value} does not serve {product.value} instances"
        )
    try:
        drop_old = DropOld(text("drop_old", DropOld.AT_GRACE_END.value))
    except ValueError:
        raise InvalidParameterValue(
            f"{where}.drop_old: must be when-unused or at-grace-end"
        ) from None
    end_old_sessions = table.get("end_old_sessions", False)
    if not isinstance(end_old_sessions, bool):
        raise InvalidParameterValue(f"{where}.end_old_sessions: must be true or false")
    if ("begin" in table or "window" in table) and "rotation" not in table:
        raise InvalidParameterValue(f"{where}: begin and window need a rotation period")
    try:
        return SecretSpec(
            tenant_id=tenant,
            name=text("name"),
            vendor=vendor,
            instance_id=instance,
            account=text("account"),
            rotation=duration("rotation"),
            begin=parse_begin(text("begin"), f"{where}.begin") if "begin" in table else None,
            window=duration("window"),
            overlap=duration("overlap"),
            drop_old=drop_old,
            end_old_sessions=end_old_sessions,
            description=text("description", ""),
            sub_type=sub_type,
            source="inventory",
        )
    except InvalidParameterValue as exc:
        if exc.message.startswith(where):
            raise
        raise InvalidParameterValue(f"{where}: {exc.message}") from None
