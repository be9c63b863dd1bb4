"""``Console``: the web console under ``/console``, served by keyturn itself.

Framework-free like ``keyturn.api``: the HTTP layer hands it a ``ConsoleRequest`` (the body
already read within the server's bounds) and sends back the ``ConsoleResponse``. Here are the
session and form rules every page shares; the pages themselves are in
``keyturn.console.pages``.

- **Sign-in** with an admin token (a form POST, never a URL): the token is checked as the admin
  API checks a bearer (``AdminTokens.authenticate``) and audited (``console:SignIn``, a failure
  as a rejected call); the session cookie then names the token's id (``keyturn.console.sessions``)
  and is ``HttpOnly``, ``SameSite=Strict``, ``Path=/console`` and ``Secure`` under TLS.
- **Every page** checks the session (signature, idle and absolute expiry) and that its token is
  still active, and re-issues the cookie (the idle deadline slides). Without one a page
  redirects to the sign-in form; a JSON endpoint answers 401.
- **Every POST** carries the session's CSRF token (the sign-in form a pre-session one) and comes
  from this origin (``Origin``, when the browser sends it); else 403, nothing done.
- **Every answer** has the Content-Security-Policy below (no inline script or style), nosniff,
  no referrer, no framing, and ``Cache-Control: no-store`` (pages show tenants' data).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import parse_qs

from keyturn.console import layout, pages
from keyturn.console.html import Html, esc, hidden, tag
from keyturn.console.sessions import COOKIE, LOGIN_COOKIE, LOGIN_SECONDS, Session, Sessions
from keyturn.core.admin_tokens import AdminToken
from keyturn.core.errors import DomainError
from keyturn.service.admin_tokens import AdminTokens
from keyturn.service.context import Answer, Caller
from keyturn.service.gate import Gate
from keyturn.service.operator import Operator
from keyturn.service.operator_scope import Scope

log = logging.getLogger(__name__)

PREFIX = "/console"
CSP = (
    "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
#: The vendored files ``/console/static/`` serves (nothing else is looked up by name).
STATIC = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleRequest:
    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client: str = ""
    #: Served over TLS: the cookies are ``Secure``.
    secure: bool = False


@dataclass(slots=True, kw_only=True)
class ConsoleResponse:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Visit:
    """A signed-in request: what a page handler works with."""

    request: ConsoleRequest
    scope: Scope
    token: AdminToken
    session: Session
    csrf: str
    query: dict[str, str]
    form: dict[str, str]
    operator: Operator
    gate: Gate

    def csrf_field(self) -> Html:
        return hidden("csrf", self.csrf)

    async def audited(
        self, action: str, resource: str, tenant: str, execute: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        """Run a change through the gate as the admin API does (``console:<action>``): a
        ``started`` record first, then the outcome."""
        return await self.gate.run_admin(
            self.scope.caller(tenant),
            action="console:" + action,
            resource=resource,
            mutating=True,
            execute=execute,
        )


class Console:
    def __init__(
        self,
        operator: Operator,
        tokens: AdminTokens,
        gate: Gate,
        sessions: Sessions,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._operator = operator
        self._tokens = tokens
        self._gate = gate
        self._sessions = sessions
        self._now = now

    @staticmethod
    def claims(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def handle(self, request: ConsoleRequest) -> ConsoleResponse:
        try:
            response = await self._route(request)
        except Exception:
            log.exception("console %s %s failed", request.method, request.path[:200])
            response = _page_response(
                500, layout.message_page("Something went wrong", "See the server log.")
            )
        response.headers.extend(SECURITY_HEADERS.items())
        return response

    async def _route(self, request: ConsoleRequest) -> ConsoleResponse:
        path = request.path.removeprefix(PREFIX).rstrip("/") or "/"
        if path.startswith("/static/"):
            return _static(path.removeprefix("/static/"))
        if path == "/signin":
            if request.method == "POST":
                return await self._sign_in(request)
            return self._sign_in_form(request, "")
        session = self._sessions.decode(_cookies(request).get(COOKIE, ""), self._now())
        token = None if session is None else await self._tokens.active_by_id(session.token_id)
        if session is None or token is None:
            if path.endswith(".json"):
                return ConsoleResponse(
                    status=401, body=b'{"error":"sign in"}', content_type="application/json"
                )
            if request.method == "POST":
                return _page_response(
                    403, layout.message_page("Refused", "Your session has ended: sign in again.")
                )
            return _redirect(
                PREFIX + "/signin?expired=1"
                if _cookies(request).get(COOKIE)
                else PREFIX + "/signin"
            )
        form = _form(request)
        if request.method == "POST" and (
            not self._same_origin(request)
            or not self._sessions.csrf_ok(session, form.get("csrf", ""))
        ):
            return _page_response(
                403,
                layout.message_page("Refused", "The form's CSRF token is missing or wrong."),
            )
        if path == "/signout" and request.method == "POST":
            response = _redirect(PREFIX + "/signin")
            response.headers.append(("set-cookie", _cookie(COOKIE, "", request.secure, max_age=0)))
            return response
        session = self._sessions.touched(session, self._now())
        visit = Visit(
            request=request,
            scope=Scope(
                tenant_id=token.tenant_id,
                token_id=token.id,
                request_id=str(uuid.uuid4()),
                source_ip=request.client,
                user_agent=request.headers.get("user-agent", ""),
            ),
            token=token,
            session=session,
            csrf=self._sessions.csrf(session),
            query=_single(parse_qs(request.query, keep_blank_values=True)),
            form=form,
            operator=self._operator,
            gate=self._gate,
        )
        try:
            outcome = await pages.dispatch(visit, request.method, path)
        except DomainError as error:
            outcome = layout.Outcome(
                status=layout.status_of(error),
                html=layout.layout(visit, "Error", tag("p", error.message, class_="error")),
            )
        if outcome is None:
            outcome = layout.Outcome(
                status=404, html=layout.layout(visit, "Not found", tag("p", "No such page."))
            )
        response = ConsoleResponse(
            status=outcome.status, body=outcome.body(), content_type=outcome.content_type
        )
        if outcome.location:
            response.headers.append(("location", outcome.location))
        max_age = self._sessions.idle
        response.headers.append(
            (
                "set-cookie",
                _cookie(COOKIE, self._sessions.encode(session), request.secure, max_age=max_age),
            )
        )
        return response

    def _sign_in_form(
        self, request: ConsoleRequest, error: str, status: int = 200
    ) -> ConsoleResponse:
        nonce = self._sessions.login_nonce(self._now())
        expired = "expired" in parse_qs(request.query) and not error
        body = layout.sign_in_page(self._sessions.login_csrf(nonce), error, expired=expired)
        response = _page_response(status, body)
        response.headers.append(
            ("set-cookie", _cookie(LOGIN_COOKIE, nonce, request.secure, max_age=LOGIN_SECONDS))
        )
        return response

    async def _sign_in(self, request: ConsoleRequest) -> ConsoleResponse:
        form = _form(request)
        nonce = _cookies(request).get(LOGIN_COOKIE, "")
        if not self._same_origin(request) or not self._sessions.login_csrf_ok(
            nonce, form.get("csrf", ""), self._now()
        ):
            return _page_response(
                403,
                layout.message_page(
                    "Refused", "The sign-in form expired or was not ours: reload it."
                ),
            )
        request_id = str(uuid.uuid4())
        caller = Caller(
            tenant_id="",
            key_id="",
            request_id=request_id,
            source_ip=request.client,
            user_agent=request.headers.get("user-agent", ""),
        )
        try:
            token = await self._tokens.authenticate("Bearer " + form.get("token", "").strip())
        except DomainError as error:
            await self._gate.rejected(
                caller, vendor="admin", action="console:SignIn", code=error.code
            )
            return self._sign_in_form(request, "That admin token is unknown or revoked.", 401)
        scope = Scope(
            tenant_id=token.tenant_id,
            token_id=token.id,
            request_id=request_id,
            source_ip=request.client,
            user_agent=caller.user_agent,
        )
        await self._gate.run_admin(
            scope.caller(token.tenant_id or "*"),
            action="console:SignIn",
            resource="console",
            mutating=False,
            execute=_nothing,
        )
        session = self._sessions.new(token.id, self._now())
        response = _redirect(PREFIX + "/")
        response.headers.append(
            (
                "set-cookie",
                _cookie(
                    COOKIE,
                    self._sessions.encode(session),
                    request.secure,
                    max_age=self._sessions.idle,
                ),
            )
        )
        response.headers.append(
            ("set-cookie", _cookie(LOGIN_COOKIE, "", request.secure, max_age=0))
        )
        return response

    @staticmethod
    def _same_origin(request: ConsoleRequest) -> bool:
        """A POST comes from this origin, as far as the browser says: ``Sec-Fetch-Site``
        when sent, and ``Origin`` when it names one (under ``Referrer-Policy: no-referrer``
        Chromium sends ``Origin: null`` for forms). ``SameSite=Strict`` already keeps the
        session cookie off cross-site posts; this refuses them even before a session exists."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return True
        return origin.split("://", 1)[-1] == request.headers.get("host", "")


async def _nothing() -> Answer:
    return Answer({})


def _cookies(request: ConsoleRequest) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in request.headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        found.setdefault(name, value)
    return found


def _cookie(name: str, value: str, secure: bool, *, max_age: int) -> str:
    cookie = f"{name}={value}; Path={PREFIX}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return cookie + ("; Secure" if secure else "")


def _form(request: ConsoleRequest) -> dict[str, str]:
    if request.method != "POST":
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    text = request.body.decode("utf-8", "replace")
    return _single(parse_qs(text, keep_blank_values=True))


def _single(values: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in values.items()}


def _redirect(location: str) -> ConsoleResponse:
    return ConsoleResponse(status=303, headers=[("location", location)])


def _page_response(status: int, html: Html) -> ConsoleResponse:
    return ConsoleResponse(status=status, body=html.encode())


def _static(name: str) -> ConsoleResponse:
    kind = STATIC.get(name)
    if kind is None:
        return ConsoleResponse(
            status=404, body=esc("not found").encode(), content_type="text/plain"
        )
    data = resources.files("keyturn.console").joinpath("static", name).read_bytes()
    return ConsoleResponse(status=200, body=data, content_type=kind)
