"""Which accounts the vendor APIs may not change: the ones keyturn logs in with, and superusers.

A key allowed to reset passwords must not be able to take over the server: a reset of keyturn's
own admin account, or of any account with full control of the engine, would hand the caller a
password it chose for exactly that. So, unless the instance opts in (``allow_admin_reset``),
such changes are refused with ``ProtectedAccount`` before anything is written:

- an account whose user name is the one keyturn logs in with on any node or sentinel of the
  instance (a MySQL ``user@host`` row counts by its user);
- a superuser, as the engine's probe reports it (``EngineInfo.superuser``), except the account
  whose password is "the instance password" (Redis ``default``): the instance-password APIs
  change it by definition, so only keyturn logging in with it protects it.

With the opt-in, a reset of keyturn's own admin still goes through the worker's lockout guard
(the new admin credential is written ahead as pending). Pure functions: the callers probe.
"""

from __future__ import annotations

from collections.abc import Iterable

from keyturn.core.engine_ports import EngineInfo
from keyturn.core.errors import ProtectedAccount
from keyturn.core.model import INSTANCE_PASSWORD_ACCOUNT, Instance, login_name

_OPT_IN = "set allow_admin_reset on the instance to allow it"


def superuser_matters(instance: Instance, account: str) -> bool:
    """Whether a probe must say if ``account`` is a superuser before it may be changed."""
    if instance.allow_admin_reset:
        return False
    return INSTANCE_PASSWORD_ACCOUNT.get(instance.engine) != account


def check(instance: Instance, account: str, infos: Iterable[EngineInfo] = ()) -> None:
    """Raise ``ProtectedAccount`` if the vendor APIs may not change ``account`` on
    ``instance``. ``infos`` are probes of the instance's nodes for ``account``; without them
    only the name is judged."""
    if instance.allow_admin_reset:
        return
    if login_name(instance.engine, account) in instance.admin_logins:
        raise ProtectedAccount(
            f"keyturn logs in to instance {instance.id} with this account; {_OPT_IN}"
        )
    if superuser_matters(instance, account) and any(info.superuser for info in infos):
        raise ProtectedAccount(f"the account is a superuser of instance {instance.id}; {_OPT_IN}")
