"""Unit tests of the rules every console request follows, without a server or a store: the
sign-in form and its pre-session cookie, the session cookie's flags (``Secure`` under TLS),
CSRF and cross-site POSTs refused before any page runs, pages without a session redirected to
the sign-in form (JSON answered 401), the security headers on every answer, and the vendored
static files. The gate is a recorder: the audit itself is the gate's (its own tests)."""

from __future__ import annotations

from typing import Any, cast

from keyturn.console import Console, ConsoleRequest, ConsoleResponse, Sessions
from keyturn.console.app import CSP
from keyturn.console.sessions import COOKIE, LOGIN_COOKIE
from keyturn.service.admin_tokens import AdminTokens
from keyturn.service.context import Answer
from tests.support.admin_api import MemoryTokens
from tests.support.fakes import FakeClock

NOW = 1_800_000_000.0


class RecordingGate:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def run_admin(self, caller: Any, *, action: str, execute: Any, **_: Any) -> Answer:
        self.calls.append(action)
        answer: Answer = await execute()
        return answer

    async def rejected(self, caller: Any, *, action: str, code: str, **_: Any) -> None:
        self.calls.append(f"{action} rejected {code}")


async def make() -> tuple[Console, RecordingGate, str]:
    tokens = AdminTokens(MemoryTokens(), FakeClock(), ttl=0)
    _, secret = await tokens.create(tenant_id="1300000001", name="unit")
    gate = RecordingGate()
    console = Console(
        cast(Any, None), tokens, cast(Any, gate), Sessions([b"k" * 32]), now=lambda: NOW
    )
    return console, gate, secret.reveal()


def cookies_of(answer: ConsoleResponse) -> dict[str, str]:
    found = {}
    for name, value in answer.headers:
        if name == "set-cookie":
            found[value.split("=", 1)[0]] = value
    return found


def value_of(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


async def sign_in(console: Console, token: str, *, secure: bool = False) -> ConsoleResponse:
    form = await console.handle(ConsoleRequest(method="GET", path="/console/signin", secure=secure))
    nonce = value_of(cookies_of(form)[LOGIN_COOKIE])
    csrf = form.body.decode().split('name="csrf" value="')[1].split('"')[0]
    return await console.handle(
        ConsoleRequest(
            method="POST",
            path="/console/signin",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "cookie": f"{LOGIN_COOKIE}={nonce}",
                "host": "keyturn.example",
                "origin": "https://keyturn.example",
                "sec-fetch-site": "same-origin",
            },
            body=f"csrf={csrf}&token={token}".encode(),
            secure=secure,
        )
    )


def headers_of(answer: ConsoleResponse) -> dict[str, str]:
    return {k: v for k, v in answer.headers if k != "set-cookie"}


async def test_signing_in_sets_a_strict_http_only_cookie_secure_under_tls() -> None:
    console, gate, token = await make()
    for secure in (False, True):
        answer = await sign_in(console, token, secure=secure)
        assert answer.status == 303 and headers_of(answer)["location"] == "/console/"
        cookie = cookies_of(answer)[COOKIE]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
        assert ("; Secure" in cookie) is secure
        assert token not in cookie
    assert gate.calls == ["console:SignIn", "console:SignIn"]


async def test_a_wrong_token_or_a_foreign_form_is_refused() -> None:
    console, gate, _ = await make()
    answer = await sign_in(console, "kt_" + "x" * 43)
    assert answer.status == 401 and COOKIE not in cookies_of(answer)
    assert gate.calls == ["console:SignIn rejected MissingAuthorization"]
    forged = await console.handle(
        ConsoleRequest(
            method="POST",
            path="/console/signin",
            headers={"content-type": "application/x-www-form-urlencoded"},
            body=b"csrf=made-up&token=kt_x",
        )
    )
    assert forged.status == 403


async def test_posts_need_the_session_csrf_token_and_this_origin() -> None:
    console, _, token = await make()
    session = value_of(cookies_of(await sign_in(console, token))[COOKIE])
    page = await console.handle(
        ConsoleRequest(
            method="GET", path="/console/nothing", headers={"cookie": f"{COOKIE}={session}"}
        )
    )
    csrf = page.body.decode().split('name="csrf" value="')[1].split('"')[0]
    base = {"content-type": "application/x-www-form-urlencoded", "cookie": f"{COOKIE}={session}"}
    for headers, body in (
        (base, b"enabled=1"),
        (base, b"csrf=wrong&enabled=1"),
        ({**base, "sec-fetch-site": "cross-site"}, f"csrf={csrf}&enabled=1".encode()),
        ({**base, "origin": "https://evil.example", "host": "k"}, f"csrf={csrf}".encode()),
    ):
        answer = await console.handle(
            ConsoleRequest(method="POST", path="/console/keys/AKID1", headers=headers, body=body)
        )
        assert answer.status == 403
    signed_out = await console.handle(
        ConsoleRequest(
            method="POST", path="/console/signout", headers=base, body=f"csrf={csrf}".encode()
        )
    )
    assert signed_out.status == 303 and "Max-Age=0" in cookies_of(signed_out)[COOKIE]


async def test_without_a_session_pages_redirect_and_json_is_401() -> None:
    console, _, _ = await make()
    page = await console.handle(ConsoleRequest(method="GET", path="/console/instances"))
    assert page.status == 303 and headers_of(page)["location"] == "/console/signin"
    stale = await console.handle(
        ConsoleRequest(method="GET", path="/console/", headers={"cookie": f"{COOKIE}=a.b"})
    )
    assert headers_of(stale)["location"] == "/console/signin?expired=1"
    data = await console.handle(ConsoleRequest(method="GET", path="/console/tasks/1.json"))
    assert data.status == 401


async def test_every_answer_has_the_security_headers_and_static_files_are_vendored() -> None:
    console, _, _ = await make()
    for path in (
        "/console/signin",
        "/console/static/console.js",
        "/console/static/x.js",
        "/console",
    ):
        headers = headers_of(await console.handle(ConsoleRequest(method="GET", path=path)))
        assert headers["content-security-policy"] == CSP
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    script = await console.handle(ConsoleRequest(method="GET", path="/console/static/console.js"))
    assert script.status == 200 and script.content_type.startswith("text/javascript")
    assert b"http://" not in script.body and b"https://" not in script.body  # nothing remote
    missing = await console.handle(ConsoleRequest(method="GET", path="/console/static/../app.py"))
    assert missing.status == 404
