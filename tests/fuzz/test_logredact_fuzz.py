"""Fuzzing ``keyturn.logredact.redact``: arbitrary text never makes it raise or take long, and a
secret of any shape the filter promises to catch never survives in any of the places it knows
(URL userinfo, ``key=value`` and JSON pairs, Redis command text, ``Signature=``), whatever the
text around it."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn.logredact import redact

#: Characters a password may hold in every template below (no quotes, separators or spaces).
SECRET_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%^*+=~"
secrets_ = st.text(alphabet=SECRET_CHARS, min_size=8, max_size=40)
#: Surrounding text: anything printable but the secret's characters can not glue onto it.
words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)

TEMPLATES = [
    "redis://default:{s}@127.0.0.1:6379/0",
    "rediss://:{s}@10.0.0.2:6380",
    "postgresql://postgres:{s}@db:5432/postgres?sslmode=require",
    "password={s}",
    "Password: {s}",
    '{{"Password": "{s}"}}',
    "{{'AccountPassword': '{s}'}}",
    "new_password={s}&x=1",
    "AccessKeySecret={s}",
    "token={s}",
    "Authorization: TC3-HMAC-SHA256 Credential=AKID/x, Signature={s}",
    "ACL SETUSER app on >{s} ~*",
    "CONFIG SET masterauth {s}",
    "AUTH default {s}",
]


@settings(max_examples=300, deadline=None)
@given(text=words)
def test_never_raises_on_any_text(text: str) -> None:
    started = time.perf_counter()
    assert isinstance(redact(text), str)
    assert redact(text * 50) is not None
    assert time.perf_counter() - started < 1.0


@settings(max_examples=300, deadline=None)
@given(secret=secrets_, template=st.sampled_from(TEMPLATES), before=words, after=words)
def test_a_secret_in_a_known_place_never_survives(
    secret: str, template: str, before: str, after: str
) -> None:
    line = f"{before} {template.format(s=secret)} {after}"
    out = redact(line)
    # The secret may legitimately occur in the surrounding text; only its known place counts.
    assert out.count(secret) <= before.count(secret) + after.count(secret)
