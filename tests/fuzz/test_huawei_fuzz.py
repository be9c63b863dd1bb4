"""Fuzzing the Huawei dialect through the real ASGI app and store: correctly signed requests with
arbitrary paths, queries and bodies on every route, and arbitrary unsigned junk, must always get
a JSON answer with an ``X-Request-Id`` header, and an ``error_code`` whenever it is an error —
never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyturn.core.model import Product
from tests.support.fuzz_harness import AppHarness, FuzzInstance
from tests.support.huawei_calls import signed_headers
from tests.support.ports import free_port

AK, SK = "HWAKFUZZ000000000001", "fuzz-secret-0123456789"
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
#: Registered, but its only node listens nowhere: resets fail as the engine is unavailable.
INSTANCE = "6d1d7a5c-1111-2222-3333-444455556666"

ROUTES = [
    ("POST", "/v2/{project}/instances/{id}/password/reset"),
    ("PUT", "/v2/{project}/instances/{id}/password"),
    ("GET", "/v2/{project}/instances/{id}"),
    ("GET", "/v2/{project}/instances"),
    ("GET", "/v2/{project}/jobs/{id}"),
]
#: Requests no API serves: a known path with another method, and an unknown path.
NO_ROUTES = [("DELETE", "/v2/{project}/instances/{id}"), ("GET", "/v2/{project}/{id}")]

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
#: Path text: no newline, which Starlette's catch-all route does not match (it answers its own
#: plain-text 404 before any dialect sees the request; reported to the http layer's owner).
path_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"), max_size=40
)


def mostly(usual: Any, others: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, else a draw from ``others``: most requests get past the
    project and id checks into the handlers."""
    return st.integers(0, 4).flatmap(lambda n: st.just(usual) if n else others)


segments = mostly(
    INSTANCE, st.sampled_from(["1", "0", "00000000-0000-0000-0000-000000000000"]) | path_text
)
projects = mostly(PROJECT, st.just("f" * 32) | path_text)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
known_names = st.sampled_from(["new_password", "no_password_access", "old_password"])
#: Passwords that pass the DCS rules, so resets and changes reach the (unreachable) engine.
good_passwords = st.sampled_from(["Kt-Fuzz-Passw0rd", "Another-Passw0rd9", "x" * 8])
fields = st.dictionaries(known_names, good_passwords | st.booleans() | json_values, max_size=3)
bodies = (
    fields.map(lambda value: json.dumps(value).encode())
    | st.dictionaries(known_names | st.text(max_size=12), json_values, max_size=4).map(
        lambda value: json.dumps(value).encode()
    )
    | st.binary(max_size=120)
    | json_values.map(lambda value: json.dumps(value).encode())
)
query_names = st.sampled_from(
    ["offset", "limit", "instance_id", "name", "name_equal", "status", "ip", "include_failure"]
)
queries = st.lists(st.tuples(query_names | text, text), max_size=4)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppHarness]:
    node = f"redis://default:pw@127.0.0.1:{free_port()}"
    h = AppHarness(
        tmp_path_factory.mktemp("fuzz"),
        tenant=PROJECT,
        key_id=AK,
        secret=SK,
        instances=[FuzzInstance(INSTANCE, Product.HUAWEI_DCS, "cn-north-4", node)],
        env={"KEYTURN_ENGINE_TIMEOUT": "1"},
    )
    yield h
    h.close()


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.headers.get("x-request-id"), response.headers
    payload: Any = response.json()
    assert isinstance(payload, dict)
    if response.status_code >= 400:
        assert payload["error_code"] and payload["error_msg"], payload


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=mostly(ROUTES[0], st.sampled_from(ROUTES[1:] + NO_ROUTES)) | st.sampled_from(ROUTES),
    project=projects,
    segment=segments,
    query=queries,
    body=bodies,
)
def test_signed_requests_with_arbitrary_input(
    harness: AppHarness,
    route: tuple[str, str],
    project: str,
    segment: str,
    query: list[tuple[str, str]],
    body: bytes,
) -> None:
    method, template = route
    decoded = template.format(project=project, id=segment)
    raw = template.format(project=quote(project, safe=""), id=quote(segment, safe=""))
    raw_query = urlencode(query, quote_via=quote)
    body = body if method in ("POST", "PUT") else b""
    headers = signed_headers(
        method,
        decoded,
        raw_query,
        body,
        date=datetime.now(UTC).replace(microsecond=0),
        secret=SK,
        ak=AK,
        project=PROJECT,
        host="fuzz",
    )
    check(harness.send(method, raw, query=raw_query, body=body, headers=headers))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    request=mostly(
        None,
        st.tuples(
            st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
            path_text.map(lambda t: "/v2/" + quote(t)),
        ),
    ).flatmap(
        lambda junk: (
            st.just(junk)
            if junk
            else st.sampled_from(ROUTES).map(
                lambda route: (route[0], route[1].format(project=PROJECT, id=INSTANCE))
            )
        )
    ),
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(
            ["Authorization", "X-Sdk-Date", "X-Project-Id", "Content-Type", "X-Sdk-Content-Sha256"]
        ),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
        | st.just(
            "SDK-HMAC-SHA256 Access=" + AK + ", SignedHeaders=host;x-sdk-date, Signature="
        ).map(lambda prefix: prefix + "0" * 64),
        max_size=5,
    ),
)
def test_unsigned_junk(
    harness: AppHarness, request: tuple[str, str], body: bytes, headers: dict[str, str]
) -> None:
    method, path = request
    check(harness.send(method, path, body=body, headers=headers))
