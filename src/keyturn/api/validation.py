"""Request validation against the schemas of ``keyturn.api.spec``: the same JSON Schema the
OpenAPI document publishes, so what the document says is what the server accepts.

Only the subset the spec uses is interpreted (``type`` incl. a list with ``null``, ``properties``,
``required``, ``additionalProperties: false``, ``minLength``/``maxLength``/``pattern``/``enum``,
``minimum``/``maximum``, ``items``/``maxItems``, ``$ref`` to a component); a schema keyword
outside it is a programming error, caught by the unit tests. Bodies are parsed only after they
were bounded (``MAX_BODY_BYTES``) and must be a JSON object: broken JSON, a nesting too deep,
``NaN``, unknown fields and wrong types are ``InvalidParameter`` / ``MissingParameter`` /
``MalformedRequest``, never an internal error. Query strings: at most ``MAX_QUERY_FIELDS``
parameters, each once, each declared; integers in ASCII digits within their bounds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from keyturn.core.errors import (
    InvalidParameter,
    InvalidParameterValue,
    MalformedRequest,
    MissingParameter,
)

MAX_QUERY_FIELDS = 32
#: Integers in queries: ASCII digits, at most this many (bounds are checked after).
_DIGITS = re.compile(r"^[0-9]{1,18}$")
_SURROGATE = re.compile("[\ud800-\udfff]")
_KNOWN = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "minLength", "maxLength",
        "pattern", "enum", "minimum", "maximum", "items", "maxItems", "$ref", "description",
        "format", "default", "examples", "readOnly", "writeOnly",
    }
)  # fmt: skip


class Schemas:
    """Component schemas by name, for ``$ref``."""

    def __init__(self, components: Mapping[str, Mapping[str, Any]]) -> None:
        self._components = components

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if ref is None:
            return schema
        return self._components[str(ref).rsplit("/", 1)[-1]]

    def check(self, value: Any, schema: Mapping[str, Any], where: str) -> None:
        """Raise a request error naming ``where`` when ``value`` does not fit ``schema``."""
        schema = self.resolve(schema)
        unknown = set(schema) - _KNOWN
        if unknown:
            raise AssertionError(f"schema keywords outside the validated subset: {unknown}")
        types = schema.get("type")
        if types is not None:
            allowed = [types] if isinstance(types, str) else list(types)
            if not any(_is(value, t) for t in allowed):
                raise InvalidParameter(f"{where} must be {' or '.join(allowed)}")
        if value is None:
            return
        if "enum" in schema and value not in schema["enum"]:
            shown = ", ".join(str(v) for v in schema["enum"])
            raise InvalidParameterValue(f"{where} must be one of: {shown}")
        if isinstance(value, str):
            self._check_string(value, schema, where)
        elif isinstance(value, int) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                raise InvalidParameterValue(f"{where} must be at least {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                raise InvalidParameterValue(f"{where} must be at most {schema['maximum']}")
        elif isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                raise InvalidParameterValue(f"{where} has more than {schema['maxItems']} items")
            for index, item in enumerate(value):
                self.check(item, schema.get("items", {}), f"{where}[{index}]")
        elif isinstance(value, dict):
            self._check_object(value, schema, where)

    def _check_string(self, value: str, schema: Mapping[str, Any], where: str) -> None:
        # Neither SQL backend stores NUL, and a lone surrogate is not UTF-8: refused here, not
        # met as an encoding error in the store.
        if "\x00" in value or _SURROGATE.search(value):
            raise InvalidParameterValue(f"{where} holds a character that is not allowed")
        if len(value) < schema.get("minLength", 0):
            raise InvalidParameterValue(f"{where} must not be shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise InvalidParameterValue(f"{where} must be at most {schema['maxLength']} long")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise InvalidParameterValue(f"{where} is not in the expected format")

    def _check_object(self, value: dict[str, Any], schema: Mapping[str, Any], where: str) -> None:
        properties: Mapping[str, Any] = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(properties))
            if extra:
                shown = ", ".join(repr(name[:40]) for name in extra[:5])
                raise InvalidParameter(f"{where} has unknown fields: {shown}")
        for name in schema.get("required", ()):
            if name not in value:
                raise MissingParameter(f"{where}.{name} is required")
        for name, sub in properties.items():
            if name in value:
                self.check(value[name], sub, f"{where}.{name}")


def _is(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    raise AssertionError(f"type {kind!r} outside the validated subset")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes) -> dict[str, Any]:
    """A JSON object from ``body`` (already bounded in size)."""
    if not body.strip():
        raise MissingParameter("the request needs a JSON object body")
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise MalformedRequest("the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise MalformedRequest("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidParameter("the body must be a JSON object")
    return value


def parse_query(
    query: str, parameters: Mapping[str, Mapping[str, Any]], schemas: Schemas
) -> dict[str, Any]:
    """The declared query ``parameters`` (name -> schema) from ``query``, typed; unknown or
    repeated parameters are refused."""
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_QUERY_FIELDS
        )
    except ValueError:
        raise InvalidParameter(f"at most {MAX_QUERY_FIELDS} query parameters") from None
    found: dict[str, Any] = {}
    for name, raw in pairs:
        schema = parameters.get(name)
        if schema is None:
            raise InvalidParameter(f"unknown query parameter {name[:40]!r}")
        if name in found:
            raise InvalidParameter(f"query parameter {name!r} is repeated")
        value: Any = raw
        if schema.get("type") == "integer":
            if not _DIGITS.match(raw):
                raise InvalidParameter(f"query parameter {name} must be a non-negative integer")
            value = int(raw)
        schemas.check(value, schema, name)
        found[name] = value
    for name, schema in parameters.items():
        if name not in found and "default" in schema:
            found[name] = schema["default"]
    return found
