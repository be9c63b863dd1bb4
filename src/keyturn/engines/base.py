"""Helpers shared by engine adapters: a time bound per operation and the translation of foreign
exceptions into the domain's ``EngineError``s at the adapter boundary.

Drivers raise their own exception types, and their text may echo a command's arguments (Redis
repeats a failed ``ACL SETUSER`` modifier, password included, in its error reply). So nothing here
copies an exception's text into a domain error or a log record. Messages are built from the
node's endpoint, the action's name and, at most, the error code word of a reply. Domain errors
are raised ``from None``, so a traceback does not show the foreign exception either. This module
imports only ``keyturn.core`` and the standard library. Each adapter passes a classifier for its
own driver's exceptions.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

from keyturn.core.errors import DomainError, EngineError, EngineRejected, EngineUnavailable

log = logging.getLogger(__name__)

#: Seconds one engine operation may take unless configured otherwise.
DEFAULT_TIMEOUT: Final = 5.0

#: ``classify(exc, endpoint, action)``: the domain error for a driver exception, or None when the
#: classifier does not know the exception. It must not copy ``str(exc)`` into its message.
Classifier = Callable[[Exception, str, str], EngineError | None]

_CODE_WORD = re.compile(r"[A-Z][A-Z0-9_]{0,31}")


def check_timeout(seconds: float) -> float:
    """Return ``seconds`` if it is a usable per-operation timeout, else raise ``ValueError``."""
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("an engine timeout must be a positive number of seconds")
    return float(seconds)


async def close_quietly(closing: Awaitable[object], what: str, timeout: float = 1.0) -> None:
    """Await a driver's close, bounded; a failure is logged and swallowed, because cleanup must
    never mask the outcome of the operation it follows."""
    try:
        async with asyncio.timeout(timeout):
            await closing
    except Exception as exc:
        log.debug("closing %s failed (%s)", what, type(exc).__name__)


def reply_code(text: str, default: str = "ERR") -> str:
    """The error code word an engine's error reply starts with (``WRONGPASS``, ``NOPERM``), or
    ``default`` if it starts with none. Never returns any other part of the text."""
    words = text.split(maxsplit=1)
    word = words[0] if words else ""
    return word if _CODE_WORD.fullmatch(word) else default


def os_reason(exc: OSError) -> str:
    """A short, secret-free reason for a socket error: the errno's symbolic name."""
    if exc.errno is not None:
        return errno.errorcode.get(exc.errno, f"errno {exc.errno}")
    return type(exc).__name__


def translate(
    exc: Exception, endpoint: str, action: str, classify: Classifier | None = None
) -> DomainError:
    """The domain error for any exception raised while an adapter talks to ``endpoint``."""
    if isinstance(exc, DomainError):
        return exc
    mapped = classify(exc, endpoint, action) if classify is not None else None
    if mapped is not None:
        return mapped
    if isinstance(exc, TimeoutError):
        return EngineUnavailable(f"{action} on {endpoint} timed out")
    if isinstance(exc, OSError):
        return EngineUnavailable(f"{endpoint} is not reachable ({os_reason(exc)})")
    log.warning("unexpected %s from %s during %s", type(exc).__name__, endpoint, action)
    return EngineRejected(f"{action} on {endpoint} failed ({type(exc).__name__})")


@asynccontextmanager
async def map_driver_errors(
    endpoint: str, action: str, classify: Classifier | None = None
) -> AsyncIterator[None]:
    """Translate every exception raised in the block into a ``DomainError``.

    Domain errors pass unchanged; ``asyncio.CancelledError`` and other ``BaseException``s are not
    touched. The translated error is raised ``from None``: a traceback does not show the driver's
    exception, whose text may hold a command's arguments.
    """
    try:
        yield
    except DomainError:
        raise
    except Exception as exc:
        raise translate(exc, endpoint, action, classify) from None


@asynccontextmanager
async def deadline(seconds: float, endpoint: str, action: str) -> AsyncIterator[None]:
    """Bound the block to ``seconds``; on expiry raise ``EngineUnavailable`` naming the endpoint.

    A ``TimeoutError`` raised by something else inside the block (a socket timeout) is left
    alone, for ``map_driver_errors`` to translate.
    """
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            yield
    except TimeoutError:
        if not scope.expired():
            raise
        raise EngineUnavailable(f"{action} on {endpoint} timed out after {seconds:g} s") from None


@asynccontextmanager
async def engine_call(
    endpoint: str, action: str, *, timeout: float, classify: Classifier | None = None
) -> AsyncIterator[None]:
    """``deadline`` and ``map_driver_errors`` together: what every adapter operation runs in."""
    async with map_driver_errors(endpoint, action, classify), deadline(timeout, endpoint, action):
        yield
