"""Keying the audit chain of a data dir: at the server's start, and the rule that a chain keyed
once stays keyed.

Records written before the chain was keyed (scheme ``sha256``) are re-keyed on the first start
that finds them, after their chain verified under its old scheme: if it does not, nothing is
rewritten, the break is logged as an error at every start and ``verify`` keeps naming it. A
chain under a master key an interrupted rotation left is re-keyed to the sealing key the same
way. Once the chain is keyed (or was empty) the file ``audit-chain.keyed`` in the data dir
records it, and from then on an unkeyed record anywhere is tampering: whoever can write the
database could otherwise rewrite the whole chain unkeyed and have the next start key their
version. (That file is outside the database, so an attacker needs the data dir as well, where
``master.key`` lies by default; keep the head hash elsewhere too.) Imports: this package and
the standard library.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from keyturn.store.audit import SqlAuditLog, store_chain_keys
from keyturn.store.sealing import fsync_dir
from keyturn.store.sql import SqlStore

log = logging.getLogger(__name__)

#: In the data dir: the chain of this data dir's store has been keyed.
KEYED_MARKER: Final = "audit-chain.keyed"


def chain_was_keyed(data_dir: Path) -> bool:
    return (data_dir / KEYED_MARKER).exists()


def mark_chain_keyed(data_dir: Path) -> None:
    """Record (durably, once) that the chain is keyed: unkeyed records are tampering from now."""
    path = data_dir / KEYED_MARKER
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.write(
            fd,
            f"The audit chain of this data dir's store is keyed (HMAC-SHA256) since"
            f" {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}: an unkeyed record in it is tampering.\n"
            "Do not delete this file.\n".encode("ascii"),
        )
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(data_dir)


def open_audit_log(store: SqlStore, data_dir: Path) -> SqlAuditLog:
    """The audit log of ``store`` under its master key, with this data dir's rule for unkeyed
    records (allowed at the chain's start only until it has been keyed)."""
    return SqlAuditLog(store, store_chain_keys(store.db, legacy=not chain_was_keyed(data_dir)))


async def start_audit_log(store: SqlStore, data_dir: Path) -> SqlAuditLog:
    """``open_audit_log``, after keying the chain if it must be (see the module docstring)."""
    audit = open_audit_log(store, data_dir)
    state = await audit.state()
    keyed = not state.unkeyed_start
    if state.unkeyed_tail:
        log.error(
            "AUDIT LOG TAMPERED WITH: its newest record is unkeyed after keyed ones (a"
            " downgrade). Run `keyturn audit verify` and investigate."
        )
    if state.needs_rekey:
        if state.unkeyed_start and not audit.keys.legacy:
            check = await audit.verify()
            log.error(
                "AUDIT LOG TAMPERED WITH: the chain was keyed, yet it now starts with unkeyed"
                " records; it is not re-keyed. First bad record: %s (%s). Run `keyturn audit"
                " verify` and investigate.",
                check.bad_seq,
                check.problem,
            )
            return audit
        done = await audit.rekey()
        if not done.check.intact:
            log.error(
                "AUDIT LOG BROKEN: the chain does not verify at record %s (%s), so it is not"
                " re-keyed under the master key; `keyturn audit verify` keeps reporting the"
                " break. Investigate before trusting the log.",
                done.check.bad_seq,
                done.check.problem,
            )
            return audit
        keyed = True
        # Hash prefixes: whole hashes look like keys to the log redaction, which masks them.
        log.warning(
            "audit chain re-keyed under the master key: %d of %d record(s) rewritten (%d were"
            " unkeyed); the head hash %s... is now %s... (`keyturn audit verify` prints it"
            " whole). This happens once after an upgrade, or after an interrupted master key"
            " rotation: at any other time, someone rewrote the log.",
            done.rekeyed,
            done.check.records,
            done.check.legacy,
            done.check.head_hash[:16],
            done.head_hash[:16],
        )
    if keyed and audit.keys.legacy:
        mark_chain_keyed(data_dir)
        audit = open_audit_log(store, data_dir)
    return audit
