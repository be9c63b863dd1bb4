"""``CLUSTER NODES`` parsing: members with their shard, whatever the reply's quirks (a node
that never met another one has no address of its own, nodes being met or without an address
are not members yet, Redis 7 adds a hostname after the bus port)."""

from __future__ import annotations

from keyturn.engines.redis_cluster import parse_cluster_nodes

M1, M2, R1 = "a" * 40, "b" * 40, "c" * 40

REPLY = f"""\
{M1} 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191
{M2} 127.0.0.1:7001@17001,cache-b master - 0 1700000000000 2 connected 8192-16383
{R1} 127.0.0.1:7002@17002 slave {M1} 0 1700000000000 1 connected
{"d" * 40} 127.0.0.1:7003@17003 handshake - 0 0 0 connected
{"e" * 40} :0@0 noaddr,slave {M2} 0 0 0 disconnected
{"f" * 40} 127.0.0.1:7004@17004 master,fail - 0 0 3 disconnected
"""


def test_members_shards_and_roles() -> None:
    members = parse_cluster_nodes(REPLY, "127.0.0.1")
    assert [(m.endpoint, m.primary, m.shard, m.failed) for m in members] == [
        ("127.0.0.1:7000", True, M1, False),
        ("127.0.0.1:7001", True, M2, False),
        ("127.0.0.1:7002", False, M1, False),
        # A failed node is kept: it still holds the account and must change when it is back.
        ("127.0.0.1:7004", True, "f" * 40, True),
    ]


def test_a_node_that_never_met_another_is_the_seed() -> None:
    lone = f"{M1} :7000@17000 myself,master - 0 0 0 connected\n"
    [member] = parse_cluster_nodes(lone, "10.0.0.5")
    assert (member.endpoint, member.primary) == ("10.0.0.5:7000", True)
    assert parse_cluster_nodes(lone) == []


def test_short_and_empty_lines_are_ignored() -> None:
    assert parse_cluster_nodes("\n\nnot a cluster reply\n") == []
