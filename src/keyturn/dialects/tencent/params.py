"""Typed reading of Tencent request parameters, whichever way they arrived.

JSON bodies carry real types (``true``, ``3``); GET queries and legacy form bodies carry strings
(``True``, ``"3"``) with lists and objects flattened as ``Users.0.UserName``. ``unflatten`` turns
the flat form into the JSON shape, and ``Params`` reads typed values from either, raising
``MissingParameter`` / ``InvalidParameter`` with the parameter's name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

from keyturn.core.errors import InvalidParameter, InvalidParameterValue, MissingParameter

#: A string integer: ASCII digits, and short enough that ``int`` never meets its digit limit.
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")
_TRUE = frozenset({"true", "True", "TRUE", "1"})
_FALSE = frozenset({"false", "False", "FALSE", "0"})


#: The deepest flattened name accepted (``Users.0.UserName`` is 3): deeper shapes exist in no
#: action, and depth is work a client could otherwise choose.
MAX_DEPTH = 6
#: The largest list index accepted, whatever the number of parameters.
MAX_INDEX = 1000
#: A list index: ASCII digits only (``str.isdigit`` also accepts ``²``, which ``int`` refuses).
_INDEX = re.compile(r"[0-9]+")


def unflatten(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``[("A.0.B", "x")]`` -> ``{"A": [{"B": "x"}]}``; numeric segments are list indices.

    Bounded by its input, whatever a client sends: a name has at most ``MAX_DEPTH`` segments,
    and an index must be below both the number of parameters (a list cannot have more entries
    than there are parameters) and ``MAX_INDEX``, so the result is never larger than the pairs.
    """
    items = list(pairs)
    limit = min(len(items), MAX_INDEX + 1)
    root: dict[str, Any] = {}
    for key, value in items:
        parts = key.split(".", MAX_DEPTH)
        if not all(parts) or len(parts) > MAX_DEPTH:
            raise InvalidParameter(f"The parameter name `{key[:100]}` is malformed.")
        node: Any = root
        for part, nxt in pairwise(parts):
            container: Any = [] if _INDEX.fullmatch(nxt) else {}
            node = _child(node, part, container, key, limit)
        _assign(node, parts[-1], value, key, limit)
    result: dict[str, Any] = _lists(root)
    return result


def _child(node: Any, part: str, default: Any, key: str, limit: int) -> Any:
    if isinstance(node, dict):
        found = node.setdefault(part, default)
    else:
        found = _index(node, part, key, default, limit)
    if not isinstance(found, dict | list):
        raise InvalidParameter(f"The parameter `{key[:100]}` conflicts with another parameter.")
    return found


def _assign(node: Any, part: str, value: str, key: str, limit: int) -> None:
    if isinstance(node, dict):
        if part in node:
            raise InvalidParameter(f"The parameter `{key[:100]}` is given twice.")
        node[part] = value
    else:
        _index(node, part, key, value, limit)


def _index(items: list[Any], part: str, key: str, default: Any, limit: int) -> Any:
    # The length test comes first: ``int`` of a 5,000-digit string raises ValueError.
    if not _INDEX.fullmatch(part) or len(part) > 4 or int(part) >= limit:
        raise InvalidParameter(f"The parameter name `{key[:100]}` has a bad list index.")
    index = int(part)
    # Sparse indices are filled with a marker and rejected in _lists.
    while len(items) <= index:
        items.append(_HOLE)
    if items[index] is _HOLE:
        items[index] = default
    return items[index]


_HOLE: Any = object()


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list):
        if any(item is _HOLE for item in value):
            raise InvalidParameter("A list parameter skips an index.")
        return [_lists(v) for v in value]
    return value


def named_accounts(params: Params, name: str) -> tuple[str, ...]:
    """The account a parameter names, for policies; () when it is missing or not a string
    (the handler then refuses the call with the right error)."""
    value = params.raw(name)
    return (value,) if isinstance(value, str) and value else ()


class Params:
    """Typed access to one request's parameters."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def raw(self, name: str) -> Any:
        """The value as received, for structured parameters parsed by the action."""
        return self._values.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._values and self._values[name] is not None

    def string(
        self, name: str, *, required: bool = False, default: str | None = None
    ) -> str | None:
        value = self._values.get(name)
        if value is None:
            if required:
                raise MissingParameter(f"The parameter `{name}` is missing.")
            return default
        if not isinstance(value, str):
            raise InvalidParameter(f"The parameter `{name}` must be a String.")
        return value

    def required_string(self, name: str) -> str:
        value = self.string(name, required=True)
        assert value is not None
        if not value:
            raise InvalidParameterValue(f"The parameter `{name}` must not be empty.")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._values.get(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in _TRUE:
            return True
        if isinstance(value, str) and value in _FALSE:
            return False
        raise InvalidParameter(f"The parameter `{name}` must be a Boolean.")

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int = 2**63 - 1
    ) -> int:
        value = self._values.get(name)
        if value is None:
            return default
        if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidParameter(f"The parameter `{name}` must be an Integer.")
        if not minimum <= value <= maximum:
            raise InvalidParameterValue(
                f"The parameter `{name}` must be between {minimum} and {maximum}."
            )
        return value

    def string_list(self, name: str) -> list[str] | None:
        value = self._values.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidParameter(f"The parameter `{name}` must be an Array of String.")
        return list(value)
