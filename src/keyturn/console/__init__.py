"""The web console under ``/console``: server-rendered pages over the operator's use cases,
signed in with an admin token (see ``keyturn.console.app``)."""

from keyturn.console.app import PREFIX, Console, ConsoleRequest, ConsoleResponse
from keyturn.console.sessions import SESSION_KEY_INFO, Sessions

__all__ = ["PREFIX", "SESSION_KEY_INFO", "Console", "ConsoleRequest", "ConsoleResponse", "Sessions"]
