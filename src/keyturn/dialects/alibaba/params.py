"""Typed reading of Alibaba RPC parameters: flat strings from the query string or a form body.

Alibaba's RPC style has no JSON bodies, so every value is a string (the Tea SDK ``str()``s
numbers and writes lists as ``Tag.1.Key``); ``Params`` turns them into checked values and raises
``MissingParameter`` / ``InvalidParameter`` / ``InvalidParameterValue`` naming the parameter,
never echoing its value (it may be a password).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from keyturn.core.errors import InvalidParameter, InvalidParameterValue, MissingParameter

#: ASCII digits only: ``str.isdigit`` also accepts superscripts that ``int`` refuses.
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


class Params:
    """Typed access to one request's flat string parameters."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def string(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name, default)

    def required(self, name: str) -> str:
        """A parameter that must be present and not empty."""
        value = self._values.get(name)
        if value is None:
            raise MissingParameter(
                f'The input parameter "{name}" that is mandatory for processing this request '
                "is not supplied."
            )
        if not value:
            raise InvalidParameterValue(f'The parameter "{name}" must not be empty.')
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self._values.get(name)
        if value is None or value == "":
            return default
        if not _INTEGER.fullmatch(value.strip()):
            raise InvalidParameter(f'The parameter "{name}" must be an integer.')
        number = int(value.strip())
        if not minimum <= number <= maximum:
            raise InvalidParameterValue(
                f'The parameter "{name}" must be between {minimum} and {maximum}.'
            )
        return number

    def choice(self, name: str, allowed: Collection[str], default: str) -> str:
        value = self._values.get(name)
        if value is None or value == "":
            return default
        if value not in allowed:
            raise InvalidParameterValue(
                f'The parameter "{name}" must be one of: ' + ", ".join(sorted(allowed)) + "."
            )
        return value
