"""Secrets at rest: AES-256-GCM sealing bound to a context, and the master key that opens it.

``AesGcmSecretBox`` implements ``keyturn.core.ports.SecretBox``. A token is
``v1:<key_id>:<urlsafe base64(nonce + ciphertext)>``: a random 96-bit nonce per value, the
caller's ``context`` (row and column) as associated data, so a token copied to another place does
not open, and ``key_id`` (the first 8 hex digits of the key's SHA-256) naming the master key
that sealed it. ``load_or_create_master_key`` reads the key from ``KEYTURN_MASTER_KEY`` or from
``<data_dir>/master.key``, created on first use with mode 0600. ``open_secret_box`` adds, as
keys that open but never seal, ``master.key.new`` and ``master.key.old`` when a master-key
rotation (``keyturn.store.rekey``) was interrupted, so every crash point leaves a data dir that
opens. ``derive_key`` makes independent subkeys of a master key for other purposes (HKDF-SHA256
with a label; the audit chain's MAC key is one), so the master key itself never leaves this
module. Nothing here ever echoes key material or plaintext. Imports: stdlib and cryptography.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyturn.core.errors import InternalError

log = logging.getLogger(__name__)

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
VERSION: Final = "v1"
KEY_FILE: Final = "master.key"
#: A rotation's new key, written before any secret is re-sealed under it.
NEW_KEY_FILE: Final = "master.key.new"
#: The key a rotation replaced, kept until every secret is known to be re-sealed.
OLD_KEY_FILE: Final = "master.key.old"
_EMPTY_RETRIES: Final = 10
_UNSEALABLE: Final = "sealed value does not open (wrong master key?)"


def key_id(key: bytes) -> str:
    """The public name of a master key: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:8]


def derive_key(master: bytes, info: bytes) -> bytes:
    """A 32-byte subkey of ``master`` for the one purpose ``info`` names (HKDF-SHA256, no
    salt): subkeys for different purposes are independent and none reveals the master key."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(
        _checked(master)
    )


class AesGcmSecretBox:
    """Seal and unseal strings with AES-256-GCM under a master key.

    ``retired`` keys still open old tokens (for a future rotation) but never seal new ones.
    """

    __slots__ = ("_ciphers", "_key_id", "_keys")

    def __init__(self, key: bytes, *, retired: Iterable[bytes] = ()) -> None:
        self._ciphers: dict[str, AESGCM] = {}
        old_keys = [_checked(old) for old in retired]
        for old in old_keys:
            self._ciphers[key_id(old)] = AESGCM(old)
        self._key_id = key_id(_checked(key))
        self._ciphers[self._key_id] = AESGCM(key)
        # The sealing key first: ``derive_keys`` names it by position.
        self._keys = (key, *(old for old in old_keys if old != key))

    @property
    def key_id(self) -> str:
        return self._key_id

    def __repr__(self) -> str:
        return f"AesGcmSecretBox(key_id={self._key_id!r})"

    def derive_keys(self, info: bytes) -> tuple[bytes, ...]:
        """``derive_key(..., info)`` of the sealing key, then of each retired key: the first
        is for making new values (MACs), the others only for checking old ones."""
        return tuple(derive_key(key, info) for key in self._keys)

    def seal(self, plaintext: str, *, context: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[self._key_id].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{VERSION}:{self._key_id}:{body}"

    def unseal(self, token: str, *, context: str) -> str:
        version, _, rest = token.partition(":")
        kid, _, body = rest.partition(":")
        cipher = self._ciphers.get(kid)
        if version != VERSION or cipher is None:
            raise InternalError(_UNSEALABLE)
        try:
            raw = base64.b64decode(body.encode("ascii"), altchars=b"-_", validate=True)
            if len(raw) <= NONCE_BYTES:
                raise InternalError(_UNSEALABLE)
            plain = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode("utf-8"))
            return plain.decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error):
            raise InternalError(_UNSEALABLE) from None


def _checked(key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError(f"a master key must be {KEY_BYTES} bytes")
    return key


def decode_master_key(text: str, *, origin: str) -> bytes:
    """Decode base64 (standard or URL-safe alphabet) of 32 bytes; errors never echo ``text``."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{origin} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{origin} must be base64 of {KEY_BYTES} bytes, not {len(key)}")
    return key


def load_or_create_master_key(data_dir: Path, env_value: str | None) -> bytes:
    """The master key: from ``env_value`` (``KEYTURN_MASTER_KEY``) when set, otherwise from
    ``data_dir/master.key``, which is created (mode 0600, 32 random bytes) on first use."""
    if env_value is not None and env_value.strip():
        return decode_master_key(env_value, origin="KEYTURN_MASTER_KEY")
    path = data_dir / KEY_FILE
    try:
        return _create_key_file(path)
    except FileExistsError:
        pass
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "master key file %s is accessible to group or others (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    text = path.read_text(encoding="ascii", errors="replace")
    for _ in range(_EMPTY_RETRIES):
        if text.strip():
            break
        # Another process may have just created the file and not written the key yet.
        time.sleep(0.05)
        text = path.read_text(encoding="ascii", errors="replace")
    if not text.strip():
        raise ValueError(f"master key file {path} is empty")
    return decode_master_key(text, origin=f"master key file {path}")


def open_secret_box(data_dir: Path, env_value: str | None) -> AesGcmSecretBox:
    """The box the store uses: the master key (see ``load_or_create_master_key``) seals, and
    in the data-dir mode the leftovers of an interrupted rotation also open."""
    key = load_or_create_master_key(data_dir, env_value)
    if env_value is not None and env_value.strip():
        return AesGcmSecretBox(key)
    retired = [
        found
        for name in (NEW_KEY_FILE, OLD_KEY_FILE)
        if (found := read_key_file(data_dir / name)) is not None and found != key
    ]
    if retired:
        log.warning(
            "a master key rotation was interrupted (%s present): run `keyturn keys rotate-master`"
            " again to finish it",
            " and ".join(n for n in (NEW_KEY_FILE, OLD_KEY_FILE) if (data_dir / n).exists()),
        )
    return AesGcmSecretBox(key, retired=retired)


def read_key_file(path: Path) -> bytes | None:
    """The key in ``path``, or None if there is no such file or it does not hold a key (a
    warning says which, never what it holds)."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    try:
        return decode_master_key(text, origin=f"key file {path}")
    except ValueError as exc:
        log.warning("ignoring %s", exc)
        return None


def write_key_file(path: Path, key: bytes) -> None:
    """Write ``key`` to ``path`` durably (0600, fsync'd, directory entry too), replacing it
    atomically: a reader sees the whole old file or the whole new one, never a part."""
    _checked(key)
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_dir(path.parent)


def new_master_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _create_key_file(path: Path) -> bytes:
    """Create ``path`` exclusively with a new key; ``FileExistsError`` if it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    log.info("created master key %s (key id %s)", path, key_id(key))
    return key


def fsync_dir(directory: Path) -> None:
    """Make the new file's directory entry durable (the key must survive a power loss)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
