"""The real ASGI app and store in-process, for fuzz tests: a runtime on a temporary data dir
with one tenant, its key and the instances a test registers (on ports nothing listens on, so
actions reach the engine layer and fail there), driven through httpx's ASGI transport on a loop
of its own. Requests never leave the process; everything behind the app is keyturn's own."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from keyturn.bootstrap import Runtime, build_runtime
from keyturn.config import load_settings
from keyturn.core.model import KeySource, Product, Tenant
from keyturn.core.secrets import Secret


@dataclass(frozen=True)
class FuzzInstance:
    id: str
    product: Product
    region: str
    node_url: str


class AppHarness:
    """One runtime serving one tenant's key; ``send`` one request to its app."""

    def __init__(
        self,
        tmp: Path,
        *,
        tenant: str,
        key_id: str,
        secret: str,
        instances: Sequence[FuzzInstance] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        settings = load_settings(data_dir=tmp, env=dict(env or {}))
        self.runtime: Runtime = self.run(build_runtime(settings))
        services = self.runtime.services
        self.run(self.runtime.store.put_tenant(Tenant(id=tenant, name="fuzz"), KeySource.CLI))
        self.run(services.admin.create_key(tenant, key_id=key_id, secret=Secret(secret)))
        for instance in instances:
            self.run(
                services.admin.add_instance(
                    tenant_id=tenant,
                    instance_id=instance.id,
                    product=instance.product,
                    region=instance.region,
                    node_urls=[Secret(instance.node_url)],
                )
            )
        transport = httpx.ASGITransport(app=self.runtime.app())
        self.client = httpx.AsyncClient(transport=transport, base_url="http://fuzz")

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def send(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        url = path + ("?" + query if query else "")
        # Header values go out as UTF-8 bytes: crafted ones need not be ASCII.
        raw = {name.encode(): value.encode() for name, value in (headers or {}).items()}
        response: httpx.Response = self.run(
            self.client.request(method, url, content=body, headers=raw)
        )
        return response

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.runtime.close())
        self.loop.close()
