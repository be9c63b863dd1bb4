"""``keyturn.engines.postgres_scram``: the verifier's shape, the verifiers made ahead of a
change and the keys kept for its checks (no I/O; ``tests/contract/test_engine_postgres`` proves
them on a real server)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from keyturn.core.secrets import Secret
from keyturn.engines.postgres_scram import PreparedVerifiers, ScramKeys, Verifier, verifier_of


def test_the_verifier_is_postgres_scram_sha_256() -> None:
    made = verifier_of(b"pencil", b"0123456789abcdef", 4096)
    method, rest = made.text.split("$", 1)
    counted_salt, keys = rest.split("$")
    assert method == "SCRAM-SHA-256" and counted_salt.startswith("4096:")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    assert made.keys is not None
    client = base64.b64decode(made.keys.client)
    assert hashlib.sha256(client).digest() == stored  # StoredKey = H(ClientKey)
    assert base64.b64decode(made.keys.server) == server
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", b"0123456789abcdef", 4096)
    assert hmac.digest(salted, b"Client Key", "sha256") == client


def test_kept_keys_serve_only_the_password_they_were_made_from() -> None:
    kept = ScramKeys(ttl=60.0)
    made = verifier_of(b"New-pw-1", b"salt-salt-salt-1", 4096)
    kept.remember("pg-1", "app", Secret("New-pw-1"), made)
    assert kept.keys_for("pg-1", "app", Secret("New-pw-1")) == made.keys
    assert kept.keys_for("pg-1", "app", Secret("New-pw-2")) is None
    assert kept.keys_for("pg-2", "app", Secret("New-pw-1")) is None
    assert kept.keys_for("pg-1", "other", Secret("New-pw-1")) is None


def test_a_verifier_without_keys_forgets_the_older_ones() -> None:
    kept = ScramKeys(ttl=60.0)
    kept.remember("pg-1", "app", Secret("New-pw-1"), verifier_of(b"New-pw-1", b"s" * 16, 4096))
    kept.remember("pg-1", "app", Secret("New-pw-1"), Verifier("SCRAM-SHA-256$libpq's"))
    assert kept.keys_for("pg-1", "app", Secret("New-pw-1")) is None


def test_keys_expire() -> None:
    kept = ScramKeys(ttl=0.0)
    kept.remember("pg-1", "app", Secret("New-pw-1"), verifier_of(b"New-pw-1", b"s" * 16, 4096))
    assert kept.keys_for("pg-1", "app", Secret("New-pw-1")) is None


def test_nothing_secret_in_reprs() -> None:
    made = verifier_of(b"New-pw-1", b"s" * 16, 4096)
    kept = ScramKeys(ttl=60.0)
    kept.remember("pg-1", "app", Secret("New-pw-1"), made)
    assert made.keys is not None
    for shown in (repr(made), repr(made.keys), repr(kept)):
        assert made.keys.client not in shown and made.keys.server not in shown
        assert made.text not in shown and "New-pw-1" not in shown


def test_an_older_libpq_keeps_no_keys() -> None:
    kept = ScramKeys(ttl=60.0, libpq=170004)
    kept.remember("pg-1", "app", Secret("New-pw-1"), verifier_of(b"New-pw-1", b"s" * 16, 4096))
    assert kept.keys_for("pg-1", "app", Secret("New-pw-1")) is None


async def test_a_prepared_verifier_serves_its_own_password_once() -> None:
    prepared = PreparedVerifiers(ttl=60.0)
    prepared.start("pg-1", "app", Secret("New-pw-1"), 4096)
    made = await prepared.take("pg-1", "app", Secret("New-pw-1"), 4096)
    assert made is not None and made.keys is not None
    assert made.text.startswith("SCRAM-SHA-256$4096:")
    salt = base64.b64decode(made.text.split("$")[1].split(":")[1])
    assert verifier_of(b"New-pw-1", salt, 4096) == made  # the password's own, salt and all
    assert await prepared.take("pg-1", "app", Secret("New-pw-1"), 4096) is None  # taken once


async def test_a_prepared_verifier_that_does_not_fit_is_not_used() -> None:
    prepared = PreparedVerifiers(ttl=60.0)
    prepared.start("pg-1", "app", Secret("New-pw-1"), 4096)
    assert await prepared.take("pg-1", "app", Secret("New-pw-2"), 4096) is None
    prepared.start("pg-1", "app", Secret("New-pw-1"), 4096)
    assert await prepared.take("pg-1", "app", Secret("New-pw-1"), 10_000) is None
    prepared.start("pg-1", "app", Secret("New-pw-1"), 4096)
    assert await prepared.take("pg-2", "app", Secret("New-pw-1"), 4096) is None
    assert await prepared.take("pg-1", "other", Secret("New-pw-1"), 4096) is None
    late = PreparedVerifiers(ttl=0.0)
    late.start("pg-1", "app", Secret("New-pw-1"), 4096)
    assert await late.take("pg-1", "app", Secret("New-pw-1"), 4096) is None


async def test_a_prepared_verifier_uses_the_iterations_the_server_reports() -> None:
    prepared = PreparedVerifiers(ttl=60.0)
    assert await prepared.take("pg-1", "app", Secret("New-pw-1"), 8192) is None
    prepared.start("pg-1", "app", Secret("New-pw-1"), 8192)
    made = await prepared.take("pg-1", "app", Secret("New-pw-1"), 8192)
    assert made is not None and made.text.startswith("SCRAM-SHA-256$8192:")


async def test_a_password_that_needs_saslprep_is_not_prepared() -> None:
    prepared = PreparedVerifiers(ttl=60.0)
    prepared.start("pg-1", "app", Secret("Névé-pw-1"), 4096)
    assert repr(prepared) == "PreparedVerifiers(0 pending)"
    assert await prepared.take("pg-1", "app", Secret("Névé-pw-1"), 4096) is None


async def test_a_prepared_verifier_shows_nothing_secret() -> None:
    prepared = PreparedVerifiers(ttl=60.0)
    prepared.start("pg-1", "app", Secret("New-pw-1"), 4096)
    assert "New-pw-1" not in repr(prepared)
    made = await prepared.take("pg-1", "app", Secret("New-pw-1"), 4096)
    assert made is not None and made.text not in repr(made)
