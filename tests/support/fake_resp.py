"""A port-level fake of many Redis 7 servers in one asyncio process, for the fleet scale bench.

Each fake instance listens on a port of its own (bound to port 0, so no two ever share one)
and keeps its own ACL users: ``default`` and an admin user, with SHA-256 password hashes as
Redis keeps them. It answers the commands keyturn's Redis adapter sends to a standalone primary
(AUTH, PING, INFO, ROLE, ACL GETUSER/SETUSER/USERS/DRYRUN/DELUSER, CONFIG GET/SET/REWRITE,
CLIENT SETINFO/SETNAME/LIST/KILL, CLUSTER NODES refused as on a non-cluster server), enough for
probe, discovery, snapshot, change, verification by a fresh login and rollback. It is a test
fake only: keyturn's code knows nothing of it.

``python -m tests.support.fake_resp COUNT ADMIN_USER ADMIN_PASSWORD DEFAULT_PASSWORD`` starts
COUNT instances and prints one JSON line with their ports, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any

INFO = (
    "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nos:Linux\r\n"
    "tcp_port:{port}\r\n\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
    "master_failover_state:no-failover\r\n"
)


def _hash(password: bytes) -> str:
    return hashlib.sha256(password).hexdigest()


@dataclass
class User:
    on: bool = True
    nopass: bool = False
    hashes: list[str] = field(default_factory=list)
    commands: str = "+@all"

    def apply(self, rules: list[bytes]) -> None:
        for raw in rules:
            rule = raw.decode()
            if rule == "on":
                self.on = True
            elif rule == "off":
                self.on = False
            elif rule == "nopass":
                self.nopass, self.hashes = True, []
            elif rule == "resetpass":
                self.nopass, self.hashes = False, []
            elif rule == "reset":
                self.on, self.nopass, self.hashes, self.commands = False, False, [], ""
            elif rule.startswith(">"):
                self._add(_hash(raw[1:]))
            elif rule.startswith("#"):
                self._add(rule[1:].lower())
            elif rule.startswith("<"):
                self._drop(_hash(raw[1:]))
            elif rule.startswith("!"):
                self._drop(rule[1:].lower())
            elif rule in ("+@all", "allcommands"):
                self.commands = "+@all"
            elif rule in ("-@all", "nocommands"):
                self.commands = "-@all"
            elif rule.startswith(("+", "-")):
                self.commands = f"{self.commands} {rule}".strip()
            # keys, channels and selectors are accepted and not kept

    def _add(self, digest: str) -> None:
        self.nopass = False
        if digest not in self.hashes:
            self.hashes.append(digest)

    def _drop(self, digest: str) -> None:
        if digest in self.hashes:
            self.hashes.remove(digest)

    def accepts(self, password: bytes) -> bool:
        return self.on and (self.nopass or _hash(password) in self.hashes)

    def getuser(self) -> list[Any]:
        flags = ["on" if self.on else "off"] + (["nopass"] if self.nopass else [])
        return [
            b"flags",
            [f.encode() for f in flags],
            b"passwords",
            [h.encode() for h in self.hashes],
            b"commands",
            self.commands.encode(),
            b"keys",
            b"~*",
            b"channels",
            b"&*",
            b"selectors",
            [],
        ]


class Instance:
    """One fake server's state."""

    def __init__(self, admin: str, admin_password: str, default_password: str) -> None:
        self.port = 0
        self.users = {"default": User(), admin: User()}
        self.users["default"].apply([f">{default_password}".encode()])
        self.users[admin].apply([f">{admin_password}".encode()])
        self.config: dict[str, bytes] = {"masteruser": b"", "masterauth": b"", "aclfile": b""}
        self.changes = 0

    def requirepass(self) -> bytes:
        return b""  # hashes only: Redis shows no plaintext either once ACL users exist


class Error(Exception):
    pass


def _encode(value: Any) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, Error):
        return b"-" + str(value).encode() + b"\r\n"
    if isinstance(value, str):
        return b"+" + value.encode() + b"\r\n"
    if isinstance(value, int):
        return b":" + str(value).encode() + b"\r\n"
    if isinstance(value, bytes):
        return b"$" + str(len(value)).encode() + b"\r\n" + value + b"\r\n"
    if isinstance(value, list):
        return b"*" + str(len(value)).encode() + b"\r\n" + b"".join(_encode(v) for v in value)
    raise TypeError(type(value))


async def _read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.strip().split()  # inline command (a PING probe)
    args: list[bytes] = []
    for _ in range(int(line[1:])):
        size = int((await reader.readline())[1:])
        args.append((await reader.readexactly(size + 2))[:-2])
    return args


def _handle(inst: Instance, session: dict[str, str], args: list[bytes]) -> Any:
    name = args[0].upper().decode()
    rest = args[1:]
    sub = rest[0].upper().decode() if rest else ""
    if name == "AUTH":
        user, password = (b"default", rest[0]) if len(rest) == 1 else (rest[0], rest[1])
        found = inst.users.get(user.decode())
        if found is None or not found.accepts(password):
            return Error("WRONGPASS invalid username-password pair or user is disabled.")
        session["user"] = user.decode()
        return "OK"
    if "user" not in session and name not in ("HELLO", "QUIT"):
        default = inst.users["default"]
        if not (default.on and default.nopass):
            return Error("NOAUTH Authentication required.")
        session["user"] = "default"
    if name == "PING":
        return "PONG"
    if name in ("SELECT", "QUIT"):
        return "OK"
    if name == "INFO":
        return INFO.format(port=inst.port).encode()
    if name == "ROLE":
        return [b"master", 0, []]
    if name == "CLIENT":
        if sub == "LIST":
            return b""
        if sub == "KILL":
            return 0
        return "OK"
    if name == "CLUSTER":
        return Error("ERR This instance has cluster support disabled")
    if name == "CONFIG":
        if sub == "GET":
            key = rest[1].decode().lower()
            value = inst.requirepass() if key == "requirepass" else inst.config.get(key)
            return [] if value is None else [key.encode(), value]
        if sub == "SET":
            key = rest[1].decode().lower()
            if key == "requirepass":
                rules = [b"resetpass", b">" + rest[2]] if rest[2] else [b"nopass"]
                inst.users["default"].apply(rules)
            else:
                inst.config[key] = rest[2]
            inst.changes += 1
            return "OK"
        if sub in ("REWRITE", "RESETSTAT"):
            return "OK"
    if name == "ACL":
        if sub == "GETUSER":
            found = inst.users.get(rest[1].decode())
            return None if found is None else found.getuser()
        if sub == "SETUSER":
            inst.users.setdefault(rest[1].decode(), User(on=False, commands="")).apply(rest[2:])
            inst.changes += 1
            return "OK"
        if sub == "USERS":
            return [u.encode() for u in sorted(inst.users)]
        if sub == "DELUSER":
            return sum(1 for u in rest[1:] if inst.users.pop(u.decode(), None) is not None)
        if sub == "DRYRUN":
            return "OK"
        if sub == "WHOAMI":
            return session["user"].encode()
        if sub == "SAVE":
            return Error("ERR This Redis instance is not configured to use an ACL file.")
    return Error(f"ERR unknown command '{name}'")


async def serve(count: int, admin: str, admin_password: str, default_password: str) -> list[int]:
    """Start ``count`` fake instances; their ports, in order."""
    ports: list[int] = []
    for _ in range(count):
        inst = Instance(admin, admin_password, default_password)

        async def client(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, inst: Instance = inst
        ) -> None:
            session: dict[str, str] = {}
            try:
                while (args := await _read_command(reader)) is not None:
                    if not args:
                        continue
                    writer.write(_encode(_handle(inst, session, args)))
                    if args[0].upper() == b"QUIT":
                        break
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(client, "127.0.0.1", 0, backlog=64)
        inst.port = server.sockets[0].getsockname()[1]
        ports.append(inst.port)
    return ports


async def _main(argv: list[str]) -> None:
    count, admin, admin_password, default_password = int(argv[0]), argv[1], argv[2], argv[3]
    ports = await serve(count, admin, admin_password, default_password)
    print(json.dumps({"ports": ports}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
