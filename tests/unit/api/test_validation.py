"""Unit tests of the admin API's request validation: bodies (broken JSON, deep nesting,
``NaN``, unknown fields, wrong types, missing fields, lengths, NUL and lone surrogates), query
strings (unknown, repeated, non-numeric and out-of-range parameters, page sizes over the
maximum) and path parameters; and that the validator agrees with ``jsonschema`` on every body
schema of the document, so the document says exactly what the server accepts."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_spec

from keyturn.api.app import route_of
from keyturn.api.problems import MethodNotAllowed
from keyturn.api.schemas import COMPONENTS
from keyturn.api.spec import MAX_PAGE, PAGING, ROUTES, document
from keyturn.api.validation import Schemas, parse_body, parse_query
from keyturn.core.errors import (
    DomainError,
    InvalidParameter,
    InvalidParameterValue,
    MalformedRequest,
    MissingParameter,
    NotFound,
    RequestError,
    UnknownAction,
)

SCHEMAS = Schemas(COMPONENTS)
BODIES = sorted({route.body for route in ROUTES if route.body is not None})


def check(value: Any, name: str) -> None:
    SCHEMAS.check(value, {"$ref": f"#/components/schemas/{name}"}, "body")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", MissingParameter),
        (b"  ", MissingParameter),
        (b"{", MalformedRequest),
        (b"\xff\xfe", MalformedRequest),
        (b"[" * 100_000 + b"]" * 100_000, MalformedRequest),
        (b'{"a": NaN}', MalformedRequest),
        (b'{"a": Infinity}', MalformedRequest),
        (b'{"a": ' + b"9" * 5000 + b"}", MalformedRequest),
        (b"[]", InvalidParameter),
        (b'"text"', InvalidParameter),
        (b"null", InvalidParameter),
    ],
)
def test_bodies_that_are_not_a_json_object(body: bytes, error: type[DomainError]) -> None:
    with pytest.raises(error):
        parse_body(body)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("NewReset", {"account": "default"}, MissingParameter),
        ("NewReset", {"account": "default", "password": "x", "extra": 1}, InvalidParameter),
        ("NewReset", {"account": 1, "password": "x"}, InvalidParameter),
        ("NewReset", {"account": "default", "password": ["x"]}, InvalidParameter),
        ("NewReset", {"account": "", "password": "x"}, InvalidParameterValue),
        ("NewReset", {"account": "a" * 201, "password": "x"}, InvalidParameterValue),
        ("NewReset", {"account": "a\x00b", "password": "x"}, InvalidParameterValue),
        ("NewReset", {"account": "\ud800", "password": "x"}, InvalidParameterValue),
        ("AccessKeyChange", {"enabled": 1}, InvalidParameter),
        ("AccessKeyChange", {"enabled": "true"}, InvalidParameter),
        ("NewAccessKey", {"tenant": "1", "policies": "p"}, InvalidParameter),
        ("NewAccessKey", {"tenant": "1", "policies": [1]}, InvalidParameter),
        ("NewAccessKey", {"tenant": "1", "policies": ["p"] * 51}, InvalidParameterValue),
        ("PolicyDocument", {"document": "[]"}, InvalidParameter),
        ("NewTenant", {"id": "1" * 65}, InvalidParameterValue),
    ],
)
def test_body_fields(name: str, value: dict[str, Any], error: type[DomainError]) -> None:
    with pytest.raises(error) as caught:
        check(value, name)
    assert type(caught.value) is error


def test_valid_bodies_pass() -> None:
    check({"account": "default", "password": "N3w-Passw0rd"}, "NewReset")
    check({"tenant": "1", "policies": ["a", "b"]}, "NewAccessKey")
    check({"tenant": "1"}, "NewAccessKey")
    check({"document": {"statement": []}}, "PolicyDocument")
    check({"enabled": False}, "AccessKeyChange")


def test_an_unknown_field_is_named_but_not_echoed_whole() -> None:
    with pytest.raises(InvalidParameter) as caught:
        check({"tenant": "1", "x" * 1000: 1}, "NewAccessKey")
    assert len(caught.value.message) < 200


LIST_INSTANCES = next(r for r in ROUTES if r.name == "ListInstances")


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("nope=1", InvalidParameter),
        ("limit=1&limit=2", InvalidParameter),
        ("limit=abc", InvalidParameter),
        ("limit=-1", InvalidParameter),
        ("limit=%C2%B2", InvalidParameter),
        ("limit=" + "9" * 5000, InvalidParameter),
        (f"limit={MAX_PAGE + 1}", InvalidParameterValue),
        ("limit=0", InvalidParameterValue),
        ("offset=10000001", InvalidParameterValue),
        ("product=mongodb", InvalidParameterValue),
        ("&".join(f"p{i}=1" for i in range(100)), InvalidParameter),
    ],
)
def test_query_strings(query: str, error: type[DomainError]) -> None:
    with pytest.raises(error):
        parse_query(query, LIST_INSTANCES.query, SCHEMAS)


def test_query_defaults_and_types() -> None:
    assert parse_query("", PAGING, SCHEMAS) == {"offset": 0, "limit": 50}
    found = parse_query("limit=100&offset=7&product=tencent-redis", LIST_INSTANCES.query, SCHEMAS)
    assert found == {"limit": 100, "offset": 7, "product": "tencent-redis"}


def test_routes_and_path_parameters() -> None:
    route, params = route_of("GET", "/admin/v1/instances/crs-abc12345")
    assert route.name == "GetInstance" and params == {"instance_id": "crs-abc12345"}
    assert route_of("GET", "/admin/v1/tasks/123")[1] == {"task_id": "123"}
    with pytest.raises(MethodNotAllowed):
        route_of("PATCH", "/admin/v1/instances")
    with pytest.raises(UnknownAction):
        route_of("GET", "/admin/v1/nothing")
    for path in ("/admin/v1/tasks/abc", "/admin/v1/instances/" + "a" * 200, "/admin/v1/tasks/1a"):
        with pytest.raises(NotFound):
            route_of("GET", path)
    with pytest.raises(UnknownAction):
        route_of("GET", "/admin/v1/instances/" + "a" * 300)


def test_every_route_is_in_the_document_with_a_handler() -> None:
    validate_spec(document())  # a valid OpenAPI 3.1 document
    paths = document()["paths"]
    for route in ROUTES:
        operation = paths[route.path][route.method.lower()]
        assert operation["operationId"] == route.name
        assert route.handler is not None or route.public
        assert str(route.status) in operation["responses"]
        for schema in (route.body, route.response):
            assert schema is None or schema in COMPONENTS
    names = [r.name for r in ROUTES]
    assert len(names) == len(set(names))


# Text without NUL and lone surrogates, which the validator refuses on top of the schema.
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


def field_values(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the schema's fields (some missing, some of any type) and maybe others."""
    fields = list(COMPONENTS[name]["properties"])
    return st.dictionaries(st.sampled_from(fields) | text, json_values, max_size=4)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("name", BODIES)
def test_the_validator_agrees_with_jsonschema(name: str, data: st.DataObject) -> None:
    value = data.draw(field_values(name))
    root = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": COMPONENTS}}
    valid = jsonschema.Draft202012Validator(root).is_valid(value)
    try:
        check(value, name)
    except RequestError:
        assert not valid, json.dumps(value)
    else:
        assert valid, json.dumps(value)
