"""Fuzzing the admin API through the real ASGI app and store: every route, with a token of
every tenant and a tenant's token, with arbitrary path parameters, query strings (unknown
names, wrong types, huge page sizes) and bodies (bytes, broken JSON, objects with unknown
fields and wrong types). Every answer must be a documented status with a JSON body, every error
an RFC 9457 problem; never a 5xx, except the engine's own unavailability (the registered
instance's node is a port nothing listens on), and never ``InternalError``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keyturn.api.schemas import COMPONENTS
from keyturn.api.spec import ROUTES, Route
from keyturn.core.model import Product
from keyturn.service.admin_tokens import AdminTokens
from keyturn.service.context import SystemClock
from keyturn.store.admin_tokens import SqlAdminTokens
from tests.support.fuzz_harness import AppHarness, FuzzInstance
from tests.support.ports import free_port

TENANT, KEY_ID, SECRET = "1300000001", "AKIDfuzzadmin00000001", "fuzz-secret-0123456789"
INSTANCE = "crs-fuzzadmin1"
#: The engine behind the instance cannot be reached: a valid reset or account listing gets
#: the engine's "unavailable", the one 5xx a well-formed request may get here.
ENGINE_CODES = {"EngineUnavailable"}
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}
ROUTED = [r for r in ROUTES if not r.public]

text = st.text(max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)
path_values = st.sampled_from([INSTANCE, TENANT, KEY_ID, "1", "readers", "\x00", "...", "x" * 300])
numbers = st.sampled_from(["0", "-1", "1", "100", "101", "99999999999", "1e3", "abc", "²", ""])


def body_for(route: Route) -> st.SearchStrategy[bytes]:
    fields: list[str] = []
    if route.body is not None:
        fields = list(COMPONENTS[route.body]["properties"])
    names = st.sampled_from(fields) | text if fields else text
    objects = st.dictionaries(names, json_values, max_size=5).map(lambda d: json.dumps(d).encode())
    return objects | st.binary(max_size=80) | st.just(b"[" * 5000) | st.just(b"{}")


def query_for(route: Route) -> st.SearchStrategy[str]:
    names = st.sampled_from([*route.query, "limit", "offset", "x"]) | text
    pairs = st.lists(st.tuples(names, numbers | text), max_size=4)
    return pairs.map(lambda ps: "&".join(f"{quote(n)}={quote(v)}" for n, v in ps))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppHarness, list[str]]]:
    node = f"redis://keyturn:pw@127.0.0.1:{free_port()}"
    h = AppHarness(
        tmp_path_factory.mktemp("admin-fuzz"),
        tenant=TENANT,
        key_id=KEY_ID,
        secret=SECRET,
        instances=[FuzzInstance(INSTANCE, Product.TENCENT_REDIS, "ap-guangzhou", node)],
    )
    tokens = AdminTokens(SqlAdminTokens(h.runtime.store.db), SystemClock())
    every = h.run(tokens.create(tenant_id=None))[1].reveal()
    scoped = h.run(tokens.create(tenant_id=TENANT))[1].reveal()
    yield h, [every, scoped]
    h.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_route_answers_malformed_requests_with_a_problem(
    harness: tuple[AppHarness, list[str]], data: st.DataObject
) -> None:
    app, tokens = harness
    route = data.draw(st.sampled_from(ROUTED))
    path = route.path
    for name in route.path_names:
        # Not "." or "..": the client would resolve them out of the path before sending.
        value = data.draw(path_values | text.filter(lambda t: t.strip(".") != ""))
        path = path.replace("{" + name + "}", quote(value, safe=""), 1)
    token = data.draw(st.sampled_from(tokens))
    answer = app.send(
        route.method,
        path,
        query=data.draw(query_for(route)),
        body=data.draw(body_for(route)),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    event(f"{route.name} {answer.status_code}")
    check(answer.status_code, answer.headers.get("content-type", ""), answer.content)


def check(status: int, media_type: str, content: bytes) -> None:
    if status == 204:
        assert content == b""
        return
    body: Any = json.loads(content)
    if status < 400:
        assert media_type == "application/json"
        return
    assert media_type == "application/problem+json", content
    assert set(body) == PROBLEM_KEYS and body["status"] == status, body
    assert body["code"] != "InternalError", body
    assert status < 500 or body["code"] in ENGINE_CODES, body


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=text,
    authorization=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
)
def test_unauthenticated_junk_gets_a_401_problem(
    harness: tuple[AppHarness, list[str]], method: str, path: str, authorization: str
) -> None:
    app, _ = harness
    answer = app.send(
        method,
        "/admin/v1/" + quote(path, safe="/"),
        headers={"authorization": authorization},
    )
    if answer.status_code == 200:  # the OpenAPI document needs no token
        assert path == "openapi.json" and method == "GET"
        return
    assert answer.status_code == 401, answer.text
    check(answer.status_code, answer.headers["content-type"], answer.content)
