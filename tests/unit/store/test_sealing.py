"""Unit tests of ``AesGcmSecretBox`` and ``load_or_create_master_key``."""

from __future__ import annotations

import base64
import logging
import re
import stat
from pathlib import Path

import pytest

from keyturn.core.errors import InternalError
from keyturn.store.sealing import AesGcmSecretBox, key_id, load_or_create_master_key

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PLAIN = "Pl@intext-Secret-ü"


def test_roundtrip_and_token_format() -> None:
    box = AesGcmSecretBox(KEY)
    token = box.seal(PLAIN, context="node:crs-1:0:password")
    assert re.fullmatch(r"v1:[0-9a-f]{8}:[A-Za-z0-9_\-]+=*", token)
    assert token.split(":")[1] == key_id(KEY) == box.key_id
    assert PLAIN not in token
    assert box.unseal(token, context="node:crs-1:0:password") == PLAIN
    # A fresh nonce per seal: the same plaintext never gives the same token.
    assert box.seal(PLAIN, context="c") != box.seal(PLAIN, context="c")
    assert box.unseal(box.seal("", context="c"), context="c") == ""


def test_a_token_opens_only_in_its_context() -> None:
    box = AesGcmSecretBox(KEY)
    token = box.seal(PLAIN, context="node:crs-1:0:password")
    with pytest.raises(InternalError) as caught:
        box.unseal(token, context="node:crs-1:1:password")
    assert caught.value.message == "sealed value does not open (wrong master key?)"
    assert PLAIN not in repr(caught.value) and token not in str(caught.value)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:20] + ("A" if t[20] != "A" else "B") + t[21:],
        lambda t: t.replace("v1:", "v2:", 1),
        lambda t: t[:12],
        lambda t: t + "!!",
        lambda t: "garbage",
        lambda t: "",
    ],
)
def test_a_tampered_token_does_not_open(tamper: object) -> None:
    box = AesGcmSecretBox(KEY)
    token = box.seal(PLAIN, context="c")
    with pytest.raises(InternalError):
        box.unseal(tamper(token), context="c")  # type: ignore[operator]


def test_flipping_any_ciphertext_byte_is_detected() -> None:
    box = AesGcmSecretBox(KEY)
    head, body = box.seal(PLAIN, context="c").rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(body))
    for i in range(len(raw)):
        flipped = raw.copy()
        flipped[i] ^= 0x01
        with pytest.raises(InternalError):
            box.unseal(f"{head}:{base64.urlsafe_b64encode(bytes(flipped)).decode()}", context="c")


def test_another_key_does_not_open_but_a_retired_one_does() -> None:
    token = AesGcmSecretBox(KEY).seal(PLAIN, context="c")
    with pytest.raises(InternalError):
        AesGcmSecretBox(OTHER_KEY).unseal(token, context="c")
    rotated = AesGcmSecretBox(OTHER_KEY, retired=[KEY])
    assert rotated.unseal(token, context="c") == PLAIN
    assert rotated.seal(PLAIN, context="c").split(":")[1] == key_id(OTHER_KEY)


def test_the_box_never_shows_its_key() -> None:
    box = AesGcmSecretBox(KEY)
    assert repr(box) == f"AesGcmSecretBox(key_id={key_id(KEY)!r})"
    assert base64.b64encode(KEY).decode() not in repr(box)
    with pytest.raises(ValueError, match="32 bytes"):
        AesGcmSecretBox(b"short")


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = load_or_create_master_key(data_dir, None)
    path = data_dir / "master.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip()) == key
    assert load_or_create_master_key(data_dir, None) == key
    assert load_or_create_master_key(data_dir, "") == key


def test_env_key_wins_and_creates_no_file(tmp_path: Path) -> None:
    assert load_or_create_master_key(tmp_path, base64.b64encode(KEY).decode()) == KEY
    assert load_or_create_master_key(tmp_path, base64.urlsafe_b64encode(KEY).decode()) == KEY
    assert not (tmp_path / "master.key").exists()


@pytest.mark.parametrize(
    "value", ["not base64 at all!!", base64.b64encode(b"x" * 16).decode(), "c2VjcmV0LXRvby1zaG9ydA"]
)
def test_an_invalid_env_key_is_refused_without_echo(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="KEYTURN_MASTER_KEY") as caught:
        load_or_create_master_key(tmp_path, value)
    assert value not in str(caught.value)


def test_a_broken_key_file_is_refused_without_echo(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("c2VjcmV0LXRvby1zaG9ydA==\n")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="master key file") as caught:
        load_or_create_master_key(tmp_path, None)
    assert "c2VjcmV0" not in str(caught.value)
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_or_create_master_key(tmp_path, None)


def test_a_key_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load_or_create_master_key(tmp_path, None)
    (tmp_path / "master.key").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="keyturn.store.sealing"):
        load_or_create_master_key(tmp_path, None)
    assert "chmod 600" in caplog.text


def test_derived_keys_are_hkdf_subkeys_sealing_key_first() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from keyturn.store.sealing import derive_key

    def hkdf(master: bytes, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)

    assert derive_key(KEY, b"purpose a") == hkdf(KEY, b"purpose a")
    assert derive_key(KEY, b"purpose a") != derive_key(KEY, b"purpose b")
    assert derive_key(KEY, b"purpose a") not in (KEY, derive_key(OTHER_KEY, b"purpose a"))
    box = AesGcmSecretBox(KEY, retired=[OTHER_KEY, KEY])
    assert box.derive_keys(b"x") == (hkdf(KEY, b"x"), hkdf(OTHER_KEY, b"x"))
    assert AesGcmSecretBox(KEY).derive_keys(b"x") == (hkdf(KEY, b"x"),)
    with pytest.raises(ValueError):
        derive_key(b"short", b"x")
