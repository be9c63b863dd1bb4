"""Redis sessions of an account on one node: who is logged in with it, and ending them.

``CLIENT LIST`` names every connection with its ``user`` (Redis 6 and later; before, everyone is
``default``), ``addr``, ``name`` (``CLIENT SETNAME``), ``age`` and ``idle`` in seconds, and the
last command. The connection's start is the node's answer time minus ``age`` (keyturn's clock:
Redis reports no wall time per client). The admin connection that asks is left out (its
``CLIENT ID`` is read in the same pipeline, so on the same connection); a replica's link to its
primary (flag ``S``) is listed, since it logs in with the account's password too. At most
``MAX_SESSIONS`` are returned. Ending one is ``CLIENT KILL ID <id> USER <account>`` (filters
combine with AND), so an id that now belongs to another user is never ended; the count is the
server's. Imports: ``keyturn.core``, ``keyturn.engines`` and redis-py (through them).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from keyturn.core.engine_ports import Session
from keyturn.core.model import Node
from keyturn.engines.redis_acl import text
from keyturn.engines.redis_admins import RedisAdmin, cmd
from keyturn.engines.redis_login import DEFAULT_USER

#: The most sessions one listing returns (Redis' ``maxclients`` defaults to 10,000).
MAX_SESSIONS: Final = 10_000


def parse_client_line(line: str) -> dict[str, str]:
    """``id=3 addr=1.2.3.4:5 name=x ...`` -> fields (a value holds no space; ``name`` may be
    empty)."""
    found: dict[str, str] = {}
    for part in line.split(" "):
        key, eq, value = part.partition("=")
        if eq:
            found[key] = value
    return found


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def listed(admin: RedisAdmin, node: Node, account: str) -> list[Session]:
    pipe = admin.client.pipeline(transaction=False)
    pipe.execute_command("CLIENT", "ID")
    pipe.execute_command("CLIENT", "LIST")
    own, reply = await pipe.execute()
    now = datetime.now(UTC)
    found: list[Session] = []
    for line in text(reply).splitlines():
        fields = parse_client_line(line.strip())
        if not fields.get("id") or fields["id"] == str(own):
            continue
        if fields.get("user", DEFAULT_USER) != account:
            continue
        age = _seconds(fields.get("age"))
        flags = fields.get("flags", "")
        state = "replica link" if "S" in flags else fields.get("cmd", "")
        found.append(
            Session(
                node=node.endpoint,
                id=fields["id"],
                account=account,
                client_addr=fields.get("addr", ""),
                client_name=fields.get("name", ""),
                connected_at=None if age is None else now - timedelta(seconds=age),
                idle_seconds=_seconds(fields.get("idle")),
                state=state,
            )
        )
        if len(found) >= MAX_SESSIONS:
            break
    found.sort(key=lambda s: (s.connected_at or now, int(s.id)))
    return found


async def ended(admin: RedisAdmin, account: str, ids: Sequence[str]) -> int:
    count = 0
    for raw in dict.fromkeys(ids):
        if not raw.isdigit() or len(raw) > 20:
            continue
        if admin.acl:
            killed = await cmd(admin.client, "CLIENT", "KILL", "ID", raw, "USER", account)
        else:
            killed = await cmd(admin.client, "CLIENT", "KILL", "ID", raw)
        count += int(killed or 0)
    return count
