"""The audit log's chain arithmetic: the canonical text of an event, the keyed link between
records, and the walk that checks a chain record by record.

Record ``n`` stores ``prev_hash`` (record ``n-1``'s hash, 64 zeros for record 1) and
``hash = HMAC-SHA256(K, prev_hash + event)`` (hex), where ``event`` is the canonical JSON of
the ``AuditEvent`` and ``K`` is derived from the master key (HKDF-SHA256, info
``keyturn audit chain v1``; ``ChainKeys``). Without ``K`` nobody can make a record that
verifies, so whoever can write the database can delete or edit records but cannot rewrite the
chain from there on. Records written before the chain was keyed have scheme ``sha256``
(``hash = sha256(prev_hash + event)``); they may only open a chain, and only until it has been
keyed once (``ChainKeys.legacy``): an unkeyed record after a keyed one is a downgrade, and is
reported like any other tampering. ``ChainWalk`` holds the rules in one place for ``verify``
and for the re-keying of a chain (``keyturn.store.audit``). Pure: no I/O. Imports:
``keyturn.core``, this package's sealing and the standard library.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from keyturn.core.audit import AuditEvent, AuditOutcome
from keyturn.store.sealing import AesGcmSecretBox

#: ``prev_hash`` of record 1.
GENESIS: Final = "0" * 64
#: ``audit_log.scheme`` of keyed records, and of records from before the chain was keyed.
KEYED: Final = "hmac-sha256"
LEGACY: Final = "sha256"
#: The HKDF label of the chain key: another label, another independent key.
CHAIN_KEY_INFO: Final = b"keyturn audit chain v1"
#: Longest text kept of any event field: clients choose user agents and claimed key ids, and a
#: record's size must not be theirs to choose.
MAX_FIELD: Final = 512


def clip(value: str, limit: int = MAX_FIELD) -> str:
    """Clip, and replace what UTF-8 cannot encode (lone surrogates from percent-decoding)."""
    return value[:limit].encode("utf-8", "replace").decode("utf-8")


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(event: AuditEvent) -> str:
    """The exact text that is stored and MACed (sorted keys, no spaces, ASCII, ``at`` as
    ISO-8601 UTC with a ``Z``)."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        fields[field.name] = _utc(value) if isinstance(value, datetime) else str(value)
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def event_from_json(text: str) -> AuditEvent:
    """Parse a stored event; ``ValueError`` (or ``TypeError``) if it is not one."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    data["at"] = datetime.fromisoformat(data["at"])
    data["outcome"] = AuditOutcome(data["outcome"])
    return AuditEvent(**data)


def keyed_hash(key: bytes, prev_hash: str, event_json: str) -> str:
    return hmac.new(key, (prev_hash + event_json).encode("ascii"), hashlib.sha256).hexdigest()


def legacy_hash(prev_hash: str, event_json: str) -> str:
    return hashlib.sha256((prev_hash + event_json).encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainKeys:
    """The key new records are MACed with (``signing``), every key a record may verify under
    (``verifying``, ``signing`` first; the others are the subkeys of the master keys an
    interrupted rotation left), and whether unkeyed records may still open the chain."""

    signing: bytes
    verifying: tuple[bytes, ...]
    legacy: bool = True

    @classmethod
    def of(cls, box: AesGcmSecretBox, *, legacy: bool = True) -> ChainKeys:
        keys = box.derive_keys(CHAIN_KEY_INFO)
        return cls(signing=keys[0], verifying=keys, legacy=legacy)

    def __repr__(self) -> str:
        return f"ChainKeys(legacy={self.legacy})"  # never the keys


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """What a walk found: ``bad_seq`` is the first record that does not fit (None when the
    chain is intact), ``problem`` says why; ``head_hash`` is the last good record's hash and
    ``legacy`` how many of the good records are unkeyed."""

    records: int
    head_hash: str
    bad_seq: int | None = None
    problem: str = ""
    legacy: int = 0

    @property
    def intact(self) -> bool:
        return self.bad_seq is None


class ChainWalk:
    """Check records in ``seq`` order, one at a time; ``step`` is False at the first record
    that does not continue the chain, which ``result`` then names."""

    def __init__(self, keys: ChainKeys) -> None:
        self._keys = keys
        self._expected_seq, self._head, self._records, self._legacy = 1, GENESIS, 0, 0
        self._bad_seq: int | None = None
        self._problem = ""
        #: The key the chain's keyed records are under, found at its first keyed record.
        self.key: bytes | None = None

    def step(self, row: Any) -> bool:
        problem = self._check(row)
        if problem:
            self._bad_seq, self._problem = int(row.seq), problem
            return False
        self._expected_seq += 1
        self._head = str(row.hash)
        self._records += 1
        self._legacy += row.scheme == LEGACY
        return True

    def result(self) -> ChainCheck:
        return ChainCheck(
            records=self._records,
            head_hash=self._head,
            bad_seq=self._bad_seq,
            problem=self._problem,
            legacy=self._legacy,
        )

    def _check(self, row: Any) -> str:
        """Why ``row`` does not continue the chain walked so far; empty if it does."""
        seq, expected = int(row.seq), self._expected_seq
        if seq != expected:
            missing = (
                f"record {expected} is missing"
                if seq == expected + 1
                else f"records {expected} to {seq - 1} are missing"
            )
            return f"{missing} (removed): the sequence jumps from {expected - 1} to {seq}"
        if row.prev_hash != self._head:
            before = "the chain start" if seq == 1 else f"record {seq - 1}'s hash"
            return f"its prev_hash is not {before} (a record was removed or moved)"
        problem = self._check_hash(row)
        if problem:
            return problem
        try:
            event = event_from_json(row.event)
        except (ValueError, TypeError, KeyError):
            return "its event is not a valid audit event"
        if (row.tenant_id, row.key_id) != (clip(event.tenant_id, 64), clip(event.key_id, 128)):
            return "its tenant_id or key_id column differs from its event (the record was edited)"
        if row.at != event.at:
            return "its at column differs from its event (the record was edited)"
        return ""

    def _check_hash(self, row: Any) -> str:
        if row.scheme == LEGACY:
            if self.key is not None:
                return (
                    "it is an unkeyed (sha256) record after keyed ones: the chain was"
                    " downgraded (records rewritten without the key)"
                )
            if not self._keys.legacy:
                return (
                    "it is an unkeyed (sha256) record in a chain that has been keyed: it was"
                    " rewritten without the key"
                )
            if not hmac.compare_digest(legacy_hash(row.prev_hash, row.event), str(row.hash)):
                return "its hash does not match its content (the record was edited)"
            return ""
        if row.scheme != KEYED:
            return f"its scheme {str(row.scheme)[:16]!r} is unknown (the record was edited)"
        candidates = self._keys.verifying if self.key is None else (self.key,)
        for key in candidates:
            if hmac.compare_digest(keyed_hash(key, row.prev_hash, row.event), str(row.hash)):
                self.key = key
                return ""
        return (
            "its MAC does not match its content (the record was edited, or written without"
            " the master key)"
        )
