"""``/healthz`` (the process answers, no store access) and ``/readyz`` (the store answers at
the newest schema; else 503 JSON) on the ASGI app, with a stand-in readiness check."""

from __future__ import annotations

import asyncio

import httpx

from keyturn.http.app import create_app


async def get(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://keyturn") as client:
        return await client.get(path)


async def test_ready_when_the_store_is() -> None:
    async def ready() -> str | None:
        return None

    app = create_app([], read_timeout=1.0, readiness=ready)
    assert (await get(app, "/readyz")).json() == {"status": "ready"}
    assert (await get(app, "/healthz")).json() == {"status": "ok"}


async def test_not_ready_is_a_503_with_the_reason() -> None:
    calls = 0

    async def down() -> str | None:
        nonlocal calls
        calls += 1
        return "the store database is unavailable"

    app = create_app([], read_timeout=1.0, readiness=down)
    answer = await get(app, "/readyz")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"status": "unavailable", "reason": "the store database is unavailable"}
    # /healthz never asks the store.
    assert (await get(app, "/healthz")).status_code == 200 and calls == 1


async def test_a_hanging_store_is_not_ready_within_the_bound() -> None:
    async def hangs() -> str | None:
        await asyncio.sleep(60)
        return None

    app = create_app([], read_timeout=1.0, readiness=hangs, readiness_timeout=0.2)
    answer = await get(app, "/readyz")
    assert answer.status_code == 503 and "in time" in answer.json()["reason"]
