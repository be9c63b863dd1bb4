"""Alibaba KMS (2016-01-20) database secrets: reading the parameters of its calls and writing
its answers' fields. Pure functions, no I/O.

After KMS's API reference: a ``SecretName`` is at most 192 letters, digits and ``_/+=.-@`` and
never starts with ``acs/``; ``SecretType`` ``Rds`` or ``Redis`` names a managed database secret
whose ``ExtendedConfig`` is a JSON object (``SecretSubType`` ``SingleUser``/``DoubleUsers``,
``DBInstanceId`` for Rds, ``InstanceId`` for Redis, ``CustomData``); ``SecretData`` holds the
account (``{"AccountName": ..., "AccountPassword": ...}`` or, for DoubleUsers, ``{"Accounts":
[...]}``); ``RotationInterval`` is a number with a unit (``7d``, ``24h``, ``3600s``). Times are
ISO 8601 UTC (``2026-12-06T02:00:00Z``). A secret's value answers as KMS writes database
credentials: ``{"AccountName": ..., "AccountPassword": ...}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from keyturn.core.errors import (
    InvalidParameter,
    InvalidParameterValue,
    MissingParameter,
    SecretNotFound,
)
from keyturn.core.secret_manager import SecretSubType
from keyturn.dialects.alibaba.params import Params
from keyturn.service.inventory_secrets import parse_duration

SECRET_TYPES: Final = ("Rds", "Redis")
SECRET_NAME: Final = re.compile(r"[A-Za-z0-9_/+=.@-]{1,192}")
ARN: Final = re.compile(
    r"acs:kms:[A-Za-z0-9-]*:(?P<account>[0-9A-Za-z_-]{1,64}):secret/(?P<name>.+)"
)
VERSION_ID: Final = re.compile(r"[A-Za-z0-9_.+=@-]{1,64}")
#: ``7d``, ``24h``, ``30m``, ``604800s``: KMS's units.
INTERVAL: Final = re.compile(r"([1-9][0-9]{0,9})([dhms])")
_UNITS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}
#: The longest ExtendedConfig / SecretData read (KMS allows 30 KiB of secret data).
MAX_JSON: Final = 30 * 1024
MAX_DESCRIPTION: Final = 256
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
MAX_PAGE_SIZE: Final = 100
MAX_PAGE_NUMBER: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class DatabaseSecret:
    """What ``CreateSecret`` says about a database secret: its engine kind, instance, account
    and sub-type."""

    secret_type: str
    instance_id: str
    account: str
    sub_type: SecretSubType
    #: keyturn's overlap (``CustomData.Overlap``): how long the previous password keeps
    #: working after a rotation; None rotates in replace mode.
    overlap: timedelta | None = None


def name_in(value: str) -> tuple[str, str | None]:
    """(the secret's name, the account an ARN names): ``SecretName`` may be the secret's ARN,
    ``acs:kms:REGION:ACCOUNT:secret/NAME``."""
    match = ARN.fullmatch(value)
    if match is None:
        return value, None
    return match["name"], match["account"]


def resource_of(params: Mapping[str, str]) -> str | None:
    """The secret a call names, for policies and the audit (its ARN read as its name)."""
    value = params.get("SecretName")
    return name_in(value)[0] if value else None


def secret_name(params: Params, tenant: str) -> str:
    """The ``SecretName`` (or ARN) of a secret of ``tenant``: an ARN of another account names
    nothing this caller has."""
    value, account = name_in(params.required("SecretName"))
    if account is not None and account != tenant:
        raise SecretNotFound("The secret does not exist.")
    if not SECRET_NAME.fullmatch(value) or value.startswith("acs/"):
        raise InvalidParameterValue(
            'The parameter "SecretName" must be at most 192 letters, digits or _/+=.-@ and '
            'must not start with "acs/".'
        )
    return value


def version_id(params: Params, *, required: bool = False) -> str | None:
    value = params.required("VersionId") if required else params.string("VersionId")
    if not value:
        return None
    if not VERSION_ID.fullmatch(value):
        raise InvalidParameterValue('The parameter "VersionId" is malformed.')
    return value


def flag(params: Params, name: str, default: bool) -> bool:
    value = params.string(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidParameter(f'The parameter "{name}" must be true or false.')


def interval(params: Params) -> timedelta | None:
    value = params.string("RotationInterval")
    if not value:
        return None
    match = INTERVAL.fullmatch(value.strip())
    if match is None:
        raise InvalidParameterValue(
            'The parameter "RotationInterval" must be a number with a unit: d, h, m or s (e.g. 7d).'
        )
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds > 10 * 365 * 86400:
        raise InvalidParameterValue('The parameter "RotationInterval" is too long.')
    return timedelta(seconds=seconds)


def interval_text(period: timedelta | None) -> str:
    """KMS answers intervals in seconds: ``604800s``."""
    return f"{int(period.total_seconds())}s" if period is not None else ""


def description(params: Params) -> str:
    value = params.string("Description") or ""
    if len(value) > MAX_DESCRIPTION:
        raise InvalidParameterValue(
            f'The parameter "Description" must be at most {MAX_DESCRIPTION} characters.'
        )
    return value


def _json_object(params: Params, name: str) -> dict[str, Any]:
    raw = params.required(name)
    if len(raw) > MAX_JSON:
        raise InvalidParameterValue(f'The parameter "{name}" is too long.')
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidParameter(f'The parameter "{name}" is not a JSON object.') from None
    if not isinstance(value, dict):
        raise InvalidParameter(f'The parameter "{name}" is not a JSON object.')
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 128:
        raise InvalidParameterValue(f"{what} must be a string of 1-128 characters.")
    return value


def database_secret(params: Params) -> DatabaseSecret:
    """``SecretType`` with its ``ExtendedConfig`` and the account ``SecretData`` names; the
    password ``SecretData`` may carry is not kept (keyturn sets a password of its own)."""
    secret_type = params.required("SecretType")
    if secret_type not in SECRET_TYPES:
        raise InvalidParameterValue(
            'The parameter "SecretType" must be Rds or Redis: keyturn serves database secrets.'
        )
    config = _json_object(params, "ExtendedConfig")
    key = "DBInstanceId" if secret_type == "Rds" else "InstanceId"
    if key not in config:
        raise MissingParameter(f'ExtendedConfig must name the instance with "{key}".')
    instance_id = _text(config[key], f"ExtendedConfig.{key}")
    raw_sub_type = config.get("SecretSubType", SecretSubType.SINGLE_USER.value)
    try:
        sub_type = SecretSubType(raw_sub_type)
    except ValueError:
        raise InvalidParameterValue(
            "ExtendedConfig.SecretSubType must be SingleUser or DoubleUsers."
        ) from None
    data = _json_object(params, "SecretData")
    if "Accounts" in data:
        accounts = data["Accounts"]
        if not isinstance(accounts, list) or not accounts or not isinstance(accounts[0], dict):
            raise InvalidParameterValue("SecretData.Accounts must be a list of accounts.")
        data = accounts[0]
    account = _text(data.get("AccountName"), "SecretData.AccountName")
    return DatabaseSecret(secret_type, instance_id, account, sub_type, _overlap(config))


def _overlap(config: dict[str, Any]) -> timedelta | None:
    """``CustomData.Overlap`` (``10m``, ``1h``..., as the inventory's ``overlap``): KMS leaves
    CustomData to its user, and keyturn reads its overlap there, so the unchanged SDK can ask
    for zero-downtime rotation (its bounds are the secret spec's)."""
    custom = config.get("CustomData")
    if custom is None or custom == {}:
        return None
    if not isinstance(custom, dict):
        raise InvalidParameterValue("ExtendedConfig.CustomData must be a JSON object.")
    value = custom.get("Overlap")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 32:
        raise InvalidParameterValue("ExtendedConfig.CustomData.Overlap must be a duration.")
    return parse_duration(value, "ExtendedConfig.CustomData.Overlap")


def extended_config(
    secret_type: str,
    instance_id: str,
    sub_type: SecretSubType,
    overlap: timedelta | None = None,
) -> str:
    key = "DBInstanceId" if secret_type == "Rds" else "InstanceId"
    custom = {"Overlap": f"{int(overlap.total_seconds())}s"} if overlap is not None else {}
    config: dict[str, Any] = {
        "SecretSubType": sub_type.value,
        key: instance_id,
        "CustomData": custom,
    }
    return json.dumps(config, separators=(",", ":"))


def secret_data(account: str, password: str) -> str:
    return json.dumps({"AccountName": account, "AccountPassword": password}, separators=(",", ":"))


def page(params: Params) -> tuple[int, int]:
    """``(PageNumber, PageSize)``."""
    number = params.integer("PageNumber", 1, minimum=1, maximum=MAX_PAGE_NUMBER)
    size = params.integer("PageSize", 10, minimum=1, maximum=MAX_PAGE_SIZE)
    return number, size


def iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT) if moment is not None else ""


def arn(region: str, tenant: str, name: str) -> str:
    return f"acs:kms:{region}:{tenant}:secret/{name}"
