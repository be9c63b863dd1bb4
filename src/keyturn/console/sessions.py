"""Console sessions: a signed, expiring cookie naming the admin token that signed in, and the
CSRF tokens of the forms it posts.

Why a signed cookie and not a table: every node of a cluster shares the master key, so a key
derived from it (HKDF, ``SESSION_KEY_INFO``) lets any node check a session another node made,
with no migration and no store write per page. The cookie carries the admin token's *id*
(never the token), a random session nonce, when the session began and when it was last used;
it is re-issued on every page so the idle deadline slides. A session ends after ``idle``
seconds without a page (30 minutes) or ``lifetime`` seconds after sign-in (8 hours), whatever
comes first; revoking the admin token ends its sessions on the next page, because each page
looks the token up by id (``AdminTokens.active_by_id``). Signing out clears the cookie; a copy
stolen before that stays valid until its idle deadline, which is the price of storing nothing.

CSRF tokens are MACs of the session nonce (one per session, checked on every POST) or, on the
sign-in form, of a nonce in a short-lived pre-session cookie (double submit). Comparisons are
constant time. Pure stdlib.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

#: The HKDF ``info`` of the session key (``SecretBox.derive_keys``).
SESSION_KEY_INFO = b"keyturn console sessions v1"
COOKIE = "keyturn_console"
LOGIN_COOKIE = "keyturn_console_login"
IDLE_SECONDS = 30 * 60
LIFETIME_SECONDS = 8 * 3600
#: How long a sign-in form stays valid.
LOGIN_SECONDS = 30 * 60
#: Longer cookies are not parsed.
MAX_COOKIE = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    token_id: str
    nonce: str
    issued: int
    seen: int


class Sessions:
    """Issue and check session cookies and CSRF tokens. ``keys``: the current key first, then
    keys of retired master keys (sessions signed with those stay valid after a rotation)."""

    def __init__(
        self,
        keys: Sequence[bytes],
        *,
        idle: int = IDLE_SECONDS,
        lifetime: int = LIFETIME_SECONDS,
    ) -> None:
        if not keys:
            raise ValueError("a session key is needed")
        self._keys = tuple(keys)
        self.idle = idle
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return f"Sessions(idle={self.idle}, lifetime={self.lifetime})"

    # ------------------------------------------------------------------ sessions

    def new(self, token_id: str, now: float) -> Session:
        at = int(now)
        return Session(token_id=token_id, nonce=secrets.token_urlsafe(16), issued=at, seen=at)

    def touched(self, session: Session, now: float) -> Session:
        return Session(
            token_id=session.token_id, nonce=session.nonce, issued=session.issued, seen=int(now)
        )

    def encode(self, session: Session) -> str:
        payload = json.dumps(
            {"t": session.token_id, "n": session.nonce, "i": session.issued, "s": session.seen},
            separators=(",", ":"),
        ).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return body + "." + self._mac(self._keys[0], b"session:" + body.encode())

    def decode(self, cookie: str, now: float) -> Session | None:
        """The session a cookie carries, or None: malformed, forged or expired alike."""
        if not cookie or len(cookie) > MAX_COOKIE or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        if not any(
            hmac.compare_digest(mac, self._mac(key, b"session:" + body.encode()))
            for key in self._keys
        ):
            return None
        try:
            raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(
                token_id=str(raw["t"]),
                nonce=str(raw["n"]),
                issued=int(raw["i"]),
                seen=int(raw["s"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if now - session.seen > self.idle or now - session.issued > self.lifetime:
            return None
        if session.seen > now + 60:  # from the future: a clock far off, not a session of ours
            return None
        return session

    # ------------------------------------------------------------------ CSRF

    def csrf(self, session: Session) -> str:
        return self._mac(self._keys[0], b"csrf:" + session.nonce.encode())

    def csrf_ok(self, session: Session, given: str) -> bool:
        return any(
            hmac.compare_digest(
                given.encode(), self._mac(key, b"csrf:" + session.nonce.encode()).encode()
            )
            for key in self._keys
        )

    def login_nonce(self, now: float) -> str:
        """The pre-session cookie of a sign-in form: a nonce and when it was made."""
        return f"{secrets.token_urlsafe(16)}~{int(now)}"

    def login_csrf(self, nonce: str) -> str:
        return self._mac(self._keys[0], b"login:" + nonce.encode())

    def login_csrf_ok(self, nonce: str, given: str, now: float) -> bool:
        _, _, made = nonce.partition("~")
        if not made.isdigit() or not 0 <= now - int(made) <= LOGIN_SECONDS:
            return False
        return any(
            hmac.compare_digest(given.encode(), self._mac(key, b"login:" + nonce.encode()).encode())
            for key in self._keys
        )

    @staticmethod
    def _mac(key: bytes, message: bytes) -> str:
        digest = hmac.new(key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
