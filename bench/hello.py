"""The baseline server of scenario 3: a bare Starlette "hello" on the same uvicorn settings
keyturn serves with (httptools, no access log)."""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def hello(request: Request) -> Response:
    return Response(b'{"hello":"world"}', media_type="application/json")


app = Starlette(routes=[Route("/", hello)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
