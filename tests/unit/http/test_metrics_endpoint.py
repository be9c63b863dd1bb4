"""``GET /metrics`` on the ASGI app with a stand-in exposition: served as given without a
token; with one, only to ``Authorization: Bearer <token>``, anything else a 401 JSON answer
that never echoes the token."""

from __future__ import annotations

import httpx
import pytest

from keyturn.http.app import MetricsEndpoint, create_app

TOKEN = "scrape-token-0123456789abcdef"


async def render() -> bytes:
    return b"# HELP keyturn_up up\n# TYPE keyturn_up gauge\nkeyturn_up 1.0\n"


async def get(endpoint: MetricsEndpoint | None, headers: dict[str, str]) -> httpx.Response:
    app = create_app([], read_timeout=1.0, metrics=endpoint)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://keyturn") as client:
        return await client.get("/metrics", headers=headers)


async def test_without_a_token_anyone_may_scrape() -> None:
    answer = await get(MetricsEndpoint(render, "text/plain; version=0.0.4"), {})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4"
    assert answer.text.endswith("keyturn_up 1.0\n")


async def test_with_the_token() -> None:
    endpoint = MetricsEndpoint(render, "text/plain", token=TOKEN)
    assert (await get(endpoint, {"Authorization": f"Bearer {TOKEN}"})).status_code == 200
    assert (await get(endpoint, {"Authorization": f"bearer  {TOKEN}"})).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}0", f"Basic {TOKEN}", TOKEN],
)
async def test_anything_else_is_refused(authorization: str | None) -> None:
    endpoint = MetricsEndpoint(render, "text/plain", token=TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = await get(endpoint, headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in answer.text and "error" in answer.json()


def test_the_token_is_not_in_the_repr() -> None:
    assert TOKEN not in repr(MetricsEndpoint(render, "text/plain", token=TOKEN))


async def test_without_metrics_the_path_is_a_vendor_path() -> None:
    # No exposition configured: /metrics reaches the dialects (none here: 404).
    assert (await get(None, {})).status_code == 404
