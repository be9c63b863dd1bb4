"""The ``Secret`` wrapper: a value that never shows itself in reprs, logs or tracebacks.

Passwords, access-key secrets and engine admin credentials travel through the code as ``Secret``;
the one way to read the value is the explicit ``reveal()``, so every place that touches plaintext
is greppable. Pure standard library.
"""

from __future__ import annotations

import hmac
from typing import Final

MASK: Final = "**********"


class Secret:
    """A secret string. ``str()``/``repr()`` are masked; ``reveal()`` returns the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the plaintext. Call only where the plaintext must leave the process."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would write the plaintext wherever the pickle goes.
        raise TypeError("Secret values cannot be pickled")
