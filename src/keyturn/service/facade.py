"""The bundle of use cases handed to inbound layers (dialects, CLI) by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from keyturn.core.metrics import NO_METRICS, Metrics
from keyturn.core.ports import Clock
from keyturn.service.accounts import Accounts
from keyturn.service.admin import Admin
from keyturn.service.credentials import Credentials
from keyturn.service.encryption import Encryption
from keyturn.service.gate import Gate
from keyturn.service.queries import Queries
from keyturn.service.replay import ReplayGuard
from keyturn.service.resets import Resets
from keyturn.service.secrets import SecretManager


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    credentials: Credentials
    resets: Resets
    queries: Queries
    admin: Admin
    encryption: Encryption
    clock: Clock
    accounts: Accounts
    replay: ReplayGuard
    gate: Gate
    #: Where the signed-call pipeline counts calls (``keyturn.core.metrics``).
    metrics: Metrics = NO_METRICS
    #: Managed secrets (issue 16); None where a composition has none (unit tests).
    secrets: SecretManager | None = None
