"""Unit tests of the console's session cookies and CSRF tokens: a session survives its own
encoding, ends after the idle time or the lifetime, is refused when forged, tampered with or
signed with another key, and stays valid under a retired key after a master key rotation; CSRF
tokens are bound to their session, sign-in tokens to their nonce and its age."""

from __future__ import annotations

from keyturn.console.sessions import IDLE_SECONDS, LIFETIME_SECONDS, LOGIN_SECONDS, Sessions

KEY = b"k" * 32
OTHER = b"o" * 32
NOW = 1_800_000_000.0


def test_a_session_round_trips_and_names_only_the_token_id() -> None:
    sessions = Sessions([KEY])
    session = sessions.new("at-0123456789ab", NOW)
    cookie = sessions.encode(session)
    assert sessions.decode(cookie, NOW + 5) == session
    assert "kt_" not in cookie


def test_sessions_end_when_idle_or_too_old() -> None:
    sessions = Sessions([KEY])
    session = sessions.new("at-1", NOW)
    assert sessions.decode(sessions.encode(session), NOW + IDLE_SECONDS + 1) is None
    # Used every few minutes, a session still ends at its lifetime.
    moment = NOW
    while moment < NOW + LIFETIME_SECONDS - 600:
        moment += 600
        session = sessions.touched(session, moment)
        assert sessions.decode(sessions.encode(session), moment + 1) is not None
    late = sessions.touched(session, NOW + LIFETIME_SECONDS + 1)
    assert sessions.decode(sessions.encode(late), NOW + LIFETIME_SECONDS + 2) is None


def test_forged_tampered_and_foreign_cookies_are_refused() -> None:
    sessions = Sessions([KEY])
    cookie = sessions.encode(sessions.new("at-1", NOW))
    body, mac = cookie.split(".")
    # The MAC's first character changed (its last one holds only 4 bits of the MAC: replaced
    # by "A" it was the same MAC one time in 16, when it already was "A" to "D").
    tampered = f"{body}.{'B' if mac[0] == 'A' else 'A'}{mac[1:]}"
    for bad in ("", "x", body, body + ".", tampered, "a." + mac, "." * 3, "a" * 2000):
        assert sessions.decode(bad, NOW) is None
    assert Sessions([OTHER]).decode(cookie, NOW) is None
    # After a master key rotation the retired key still checks sessions it signed.
    assert Sessions([OTHER, KEY]).decode(cookie, NOW) is not None


def test_csrf_tokens_are_bound_to_their_session() -> None:
    sessions = Sessions([KEY])
    one, two = sessions.new("at-1", NOW), sessions.new("at-1", NOW)
    assert sessions.csrf_ok(one, sessions.csrf(one))
    assert not sessions.csrf_ok(two, sessions.csrf(one))
    assert not sessions.csrf_ok(one, "")


def test_sign_in_tokens_are_bound_to_their_nonce_and_expire() -> None:
    sessions = Sessions([KEY])
    nonce = sessions.login_nonce(NOW)
    token = sessions.login_csrf(nonce)
    assert sessions.login_csrf_ok(nonce, token, NOW + 1)
    assert not sessions.login_csrf_ok(nonce, token, NOW + LOGIN_SECONDS + 1)
    assert not sessions.login_csrf_ok(sessions.login_nonce(NOW), token, NOW + 1)
    assert not sessions.login_csrf_ok("no-time", sessions.login_csrf("no-time"), NOW)
