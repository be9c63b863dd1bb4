"""Huawei Cloud SDK-HMAC-SHA256 (AK/SK) signatures, verified server-side. Pure functions, no I/O.

Hand-written because no library verifies these server-side; the canonical forms follow the
official SDK (``huaweicloudsdkcore/signer/signer.py``): the canonical URI is every decoded path
segment as ``quote(seg, safe='~')`` with a ``/`` appended, the query is re-encoded and sorted,
each signed header is ``name:value.strip()``, and the string to sign is
``SDK-HMAC-SHA256\\n<X-Sdk-Date>\\n<hex sha256(canonical request)>``. Beyond what the SDK does, the
server insists on what makes a signature mean something: ``host`` and ``x-sdk-date`` must be
signed, and so must every header that changes how keyturn reads the request (``content-type``,
``x-project-id``, ``x-sdk-content-sha256``, ``x-security-token``) when it is present; a body is
always hashed, so ``UNSIGNED-PAYLOAD`` is only accepted for bodiless requests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from keyturn.core.errors import MissingAuthorization, SignatureInvalid
from keyturn.dialects._wire import WireRequest

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_HASH = hashlib.sha256(b"").hexdigest()
CONTENT_HASH_HEADER = "x-sdk-content-sha256"

#: Headers that must be signed whenever they are present: each changes how the request is read.
SIGNED_WHEN_PRESENT = ("content-type", "x-project-id", CONTENT_HASH_HEADER, "x-security-token")
#: Headers every signature must cover.
ALWAYS_SIGNED = ("host", "x-sdk-date")

_AUTH = re.compile(
    r"^SDK-HMAC-SHA256\s+Access=(?P<ak>[^,\s]{1,128})\s*,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9;._-]{1,1024})\s*,\s*"
    r"Signature=(?P<sig>[0-9a-fA-F]{64})\s*$"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HuaweiAuthorization:
    """The parsed ``Authorization`` header of an SDK-HMAC-SHA256 request."""

    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> HuaweiAuthorization:
    """Parse ``SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...``."""
    stripped = value.strip()
    if not stripped:
        raise MissingAuthorization("the Authorization header is missing")
    if not stripped.startswith(ALGORITHM + " "):
        raise MissingAuthorization(
            "the signing algorithm is not supported; sign with SDK-HMAC-SHA256"
        )
    match = _AUTH.match(stripped)
    if match is None:
        raise MissingAuthorization("the Authorization header is not a valid SDK-HMAC-SHA256 value")
    headers = tuple(match["headers"].split(";"))
    if any(not name for name in headers) or list(headers) != sorted(set(headers)):
        raise MissingAuthorization("SignedHeaders must be sorted, unique, lower-case names")
    return HuaweiAuthorization(
        access_key=match["ak"], signed_headers=headers, signature=match["sig"].lower()
    )


def parse_sdk_date(value: str) -> datetime:
    """The instant an ``X-Sdk-Date`` value (``20261122T111445Z``) names, in UTC."""
    if len(value) != 16:
        raise MissingAuthorization("the X-Sdk-Date header is missing or not in %Y%m%dT%H%M%SZ")
    try:
        parsed = datetime.strptime(value, DATE_FORMAT)
    except ValueError:
        raise MissingAuthorization(
            "the X-Sdk-Date header is missing or not in %Y%m%dT%H%M%SZ"
        ) from None
    return parsed.replace(tzinfo=UTC)


def canonical_uri(path: str) -> str:
    """Each segment quoted with only ``~`` safe; a trailing ``/`` always. ``path`` is the
    decoded path (the ASGI ``path``): the SDK unquotes its encoded path before quoting each
    segment, and the HTTP server already did that unquoting."""
    uri = "/".join(quote(segment, safe="~") for segment in path.split("/"))
    return uri if uri.endswith("/") else uri + "/"


def query_pairs(query: str) -> list[tuple[str, str]]:
    """Decode a raw query string the way the SDK encoded it: ``%XX`` escapes, never ``+``."""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key, errors="replace"), unquote(value, errors="replace")))
    return pairs


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    """Sorted ``quote(k, '~')=quote(v, '~')`` pairs joined with ``&``."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(pairs))


def _header_text(value: str) -> str:
    # Header values arrive as latin-1 decoded bytes; the SDK signs their UTF-8 text.
    try:
        return value.encode("latin-1").decode("utf-8").strip()
    except UnicodeError:
        raise SignatureInvalid("a signed header is not valid UTF-8") from None


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    """The payload hash to sign. A non-empty body is always hashed: a client-declared
    ``X-Sdk-Content-Sha256`` (``UNSIGNED-PAYLOAD`` included) must then equal that hash, so no
    body ever travels unauthenticated."""
    if not body:
        return EMPTY_HASH
    actual = hashlib.sha256(body).hexdigest()
    declared = headers.get(CONTENT_HASH_HEADER)
    if declared is not None and declared.strip().lower() != actual:
        raise SignatureInvalid("a request body must be signed (X-Sdk-Content-Sha256 is refused)")
    return actual


def check_signed_headers(auth: HuaweiAuthorization, headers: Mapping[str, str]) -> None:
    """The signature must cover ``host``, ``x-sdk-date`` and every header in
    ``SIGNED_WHEN_PRESENT`` that the request carries; every signed header must be present."""
    signed = set(auth.signed_headers)
    for name in ALWAYS_SIGNED:
        if name not in signed:
            raise MissingAuthorization(f"SignedHeaders must include {name}")
    for name in SIGNED_WHEN_PRESENT:
        if name in headers and name not in signed:
            raise MissingAuthorization(f"SignedHeaders must include {name}")
    for name in auth.signed_headers:
        if name not in headers:
            raise MissingAuthorization(f"the signed header {name} is missing")


def canonical_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    """The SDK's canonical request. ``headers`` are lower-cased names, values as received."""
    canonical_headers = "".join(
        f"{name}:{_header_text(headers.get(name, ''))}\n" for name in signed_headers
    )
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query_pairs(query)),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash(headers, body),
        )
    )


def string_to_sign(canonical: str, sdk_date: datetime) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{sdk_date.strftime(DATE_FORMAT)}\n{digest}"


def signature(secret_key: str, text: str) -> str:
    """Hex HMAC-SHA256 of ``text`` under the secret key."""
    return hmac.new(secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()


def verify(
    *, auth: HuaweiAuthorization, secret_key: str, request: WireRequest, sdk_date: datetime
) -> None:
    """Raise ``SignatureInvalid`` (or ``MissingAuthorization`` for an incomplete header list)
    unless the request's signature matches."""
    check_signed_headers(auth, request.headers)
    canonical = canonical_request(
        method=request.method,
        path=request.path,
        query=request.query,
        headers=request.headers,
        signed_headers=auth.signed_headers,
        body=request.body,
    )
    expected = signature(secret_key, string_to_sign(canonical, sdk_date))
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureInvalid("verify aksk signature fail")
