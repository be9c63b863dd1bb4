"""Tencent SSM (Secrets Manager, 2019-09-23) product secrets: reading the parameters of its
calls and writing its answers' fields. Pure functions, no I/O.

Field names, formats and bounds follow SSM's API reference: a ``SecretName`` is at most 128
letters, digits, ``-`` and ``_`` starting with a letter or digit; a ``UserNamePrefix`` at most
8 letters, digits and ``_`` starting with a letter; ``RotationBeginTime`` is
``2006-01-02 15:04:05``; a rotation ``Frequency`` counts days. ``ProductName`` is SSM's name of
the cloud product ("Redis", "Mysql", "Tdsql-mysql", ...); keyturn adds "PostgreSQL" (SSM has no
PostgreSQL product secrets) and maps each to the keyturn product whose instances it names.
Product secrets answer ``SecretString`` as SSM does for database credentials: a JSON object
with ``UserName`` and ``Password``. Times in answers are Unix seconds where SSM's fields are
integers and ``2006-01-02 15:04:05`` where they are strings.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Final

from keyturn.core.errors import InvalidParameter, InvalidParameterValue
from keyturn.core.model import Product
from keyturn.dialects.tencent.params import Params
from keyturn.service.inventory_secrets import parse_duration

#: SSM's ProductName values -> the keyturn product whose instances they name.
PRODUCT_NAMES: Final = {
    "Redis": Product.TENCENT_REDIS,
    "Mysql": Product.TENCENT_TDMYSQL,
    "Tdsql-mysql": Product.TENCENT_TDMYSQL,
    "Tdsql_C_Mysql": Product.TENCENT_TDMYSQL,
    "PostgreSQL": Product.TENCENT_POSTGRES,
}
#: The name an answer gives each keyturn product (the first SSM name that maps to it).
NAME_OF_PRODUCT: Final = {
    Product.TENCENT_REDIS: "Redis",
    Product.TENCENT_TDMYSQL: "Tdsql-mysql",
    Product.TENCENT_POSTGRES: "PostgreSQL",
}
SECRET_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
USER_NAME_PREFIX: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,7}")
#: A MySQL account's host part as SSM's ``Domains`` takes it: an IP, a pattern with ``%``.
DOMAIN: Final = re.compile(r"[A-Za-z0-9%._:-]{1,255}")
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
#: SSM's rotation frequencies, in days.
MIN_FREQUENCY_DAYS: Final = 1
MAX_FREQUENCY_DAYS: Final = 365
#: The version ids SSM gives the current (and keyturn the previous) value of a product secret.
CURRENT_VERSION: Final = "SSM_Current"
PREVIOUS_VERSION: Final = "SSM_Previous"
#: The most secrets ListSecrets answers at once.
MAX_LIMIT: Final = 1000
MAX_DESCRIPTION: Final = 2048
#: DescribeAsyncRequestInfo's TaskStatus values.
FLOW_RUNNING: Final = 0
FLOW_SUCCEEDED: Final = 1
FLOW_FAILED: Final = 2


def secret_name(params: Params, name: str = "SecretName") -> str:
    value = params.required_string(name)
    if not SECRET_NAME.fullmatch(value):
        raise InvalidParameterValue(
            f"The parameter `{name}` must be 1-128 letters, digits, `-` or `_`, starting with a "
            "letter or digit."
        )
    return value


def product_of(params: Params) -> Product:
    value = params.required_string("ProductName")
    product = PRODUCT_NAMES.get(value)
    if product is None:
        raise InvalidParameterValue(
            "The parameter `ProductName` must be one of: " + ", ".join(PRODUCT_NAMES) + "."
        )
    return product


def user_name_prefix(params: Params) -> str:
    value = params.required_string("UserNamePrefix")
    if not USER_NAME_PREFIX.fullmatch(value):
        raise InvalidParameterValue(
            "The parameter `UserNamePrefix` must be at most 8 letters, digits or `_`, starting "
            "with a letter."
        )
    return value


def domains(params: Params) -> list[str]:
    """``Domains``: the host parts of a MySQL account (``%`` when none is given)."""
    found = params.string_list("Domains") or ["%"]
    if len(found) > 10:
        raise InvalidParameterValue("The parameter `Domains` holds at most 10 hosts.")
    for item in found:
        if not DOMAIN.fullmatch(item):
            raise InvalidParameterValue("The parameter `Domains` holds a malformed host.")
    return found


def description(params: Params) -> str:
    value = params.string("Description") or ""
    if len(value.encode()) > MAX_DESCRIPTION:
        raise InvalidParameterValue(
            f"The parameter `Description` must be at most {MAX_DESCRIPTION} bytes."
        )
    return value


def frequency(params: Params, name: str, default: int | None) -> timedelta | None:
    """A rotation period given in days; None when absent and there is no default."""
    if name not in params:
        return None if default is None else timedelta(days=default)
    days = params.integer(name, 0, minimum=MIN_FREQUENCY_DAYS, maximum=MAX_FREQUENCY_DAYS)
    return timedelta(days=days)


def begin_time(params: Params, name: str = "RotationBeginTime") -> datetime | None:
    value = params.string(name)
    if not value:
        return None
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidParameterValue(
            f"The parameter `{name}` must be a time as 2006-01-02 15:04:05."
        ) from None


def version_stage(params: Params) -> tuple[bool, str | None]:
    """``VersionId``: (previous?, a specific version id or None for a stage)."""
    value = params.string("VersionId") or ""
    if value in ("", CURRENT_VERSION):
        return False, None
    if value == PREVIOUS_VERSION:
        return True, None
    if len(value) > 64:
        raise InvalidParameterValue("The parameter `VersionId` must be at most 64 characters.")
    return False, value


#: The tag that asks for overlap mode: SSM leaves tags to their user, so the unchanged SDK can
#: ask for zero-downtime rotation (``{"TagKey": "keyturn:overlap", "TagValue": "10m"}``).
OVERLAP_TAG: Final = "keyturn:overlap"
MAX_TAGS: Final = 50


def overlap(params: Params) -> timedelta | None:
    """The ``keyturn:overlap`` tag's duration (the inventory's ``overlap`` format)."""
    tags = params.raw("Tags")
    if tags is None:
        return None
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise InvalidParameter(f"The parameter `Tags` must be an Array of at most {MAX_TAGS} Tag.")
    for tag in tags:
        if not isinstance(tag, dict):
            raise InvalidParameter("The parameter `Tags` must be an Array of Tag.")
        if tag.get("TagKey") != OVERLAP_TAG:
            continue
        value = tag.get("TagValue")
        if not isinstance(value, str) or len(value) > 32:
            raise InvalidParameterValue(f"The tag `{OVERLAP_TAG}` must be a duration.")
        return parse_duration(value, f"the tag {OVERLAP_TAG}")
    return None


def secret_string(user_name: str, password: str) -> str:
    """A product secret's value, as SSM writes database credentials."""
    return json.dumps({"UserName": user_name, "Password": password}, separators=(",", ":"))


def unix(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0


def text_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT) if moment is not None else ""


def days(period: timedelta | None) -> int:
    """A period in SSM's whole days (at least 1 for any period set)."""
    if period is None:
        return 0
    return max(1, period // timedelta(days=1))
