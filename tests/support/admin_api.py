"""Driving the admin API in tests: make admin tokens with the CLI (the token is the last line
``create`` prints), and a client that validates every answer against the OpenAPI document the
server serves (the document itself with ``openapi_spec_validator``, each body with
``jsonschema`` against the schema its operation and status declare) and remembers which
operations it saw answer, so a test can prove it covered every route. ``MemoryTokens`` is the
admin-token repository in memory, for unit tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import jsonschema
from openapi_spec_validator import validate as validate_spec

from keyturn.core.admin_tokens import AdminToken
from tests.support.cli import keyturn_cli
from tests.support.keyturn_server import KeyturnServer


def create_token(server: KeyturnServer, *args: str) -> str:
    """``keyturn admin-tokens create ARGS`` on the server's data dir; the token."""
    done = keyturn_cli(server.data_dir, "admin-tokens", "create", *args, env=server.store_env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("kt_"), done.stdout
    return token


def token_id(server: KeyturnServer, token: str) -> str:
    """The id of ``token`` (the CLI's line before it names it)."""
    from keyturn.core.admin_tokens import token_hash
    from keyturn.store.admin_tokens import SqlAdminTokens

    async def find(store: Any) -> AdminToken | None:
        return await SqlAdminTokens(store.db).admin_token_by_hash(token_hash(token))

    found = server.with_store(find)
    assert found is not None
    return found.id


@dataclass
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]


@dataclass
class AdminClient:
    """Calls the admin API of ``endpoint`` with ``token`` and validates every answer."""

    endpoint: str
    token: str | None
    document: dict[str, Any] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.document:
            answer = httpx.get(f"http://{self.endpoint}/admin/v1/openapi.json", timeout=10)
            assert answer.status_code == 200
            self.document = answer.json()
        validate_spec(self.document)
        self._operations = [
            Operation(method.upper(), template, _template_regex(template), spec)
            for template, item in self.document["paths"].items()
            for method, spec in item.items()
        ]

    def with_token(self, token: str | None) -> AdminClient:
        return AdminClient(self.endpoint, token, self.document, self.seen)

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if self.token is not None:
            sent.setdefault("authorization", f"Bearer {self.token}")
        answer = httpx.request(
            method,
            f"http://{self.endpoint}/admin/v1{path}",
            json=json,
            content=content,
            params=params,
            headers=sent,
            timeout=30,
        )
        self.check(method, path, answer)
        return answer

    def check(self, method: str, path: str, answer: httpx.Response) -> None:
        """The answer follows the document: its status's schema, or the problem schema."""
        assert answer.status_code < 500, answer.text
        operation = self.operation(method, "/admin/v1" + path.split("?")[0])
        status = str(answer.status_code)
        if answer.status_code >= 400:
            assert answer.headers["content-type"] == "application/problem+json", answer.text
            self._validate(answer.json(), {"$ref": "#/components/schemas/Problem"})
            return
        if operation is None:
            raise AssertionError(f"{method} {path} answered {status} but is not documented")
        declared = operation.spec["responses"].get(status)
        assert declared is not None, f"{operation.spec['operationId']}: {status} not declared"
        self.seen.add(operation.spec["operationId"])
        content = declared.get("content")
        if content is None:
            assert answer.content == b""
            return
        assert answer.headers["content-type"] == "application/json"
        self._validate(answer.json(), content["application/json"]["schema"])

    def operation(self, method: str, path: str) -> Operation | None:
        for op in self._operations:
            if op.method == method and op.pattern.match(path):
                return op
        return None

    def operation_ids(self) -> set[str]:
        return {op.spec["operationId"] for op in self._operations}

    def _validate(self, value: Any, schema: dict[str, Any]) -> None:
        root = {**schema, "components": self.document["components"]}
        jsonschema.Draft202012Validator(
            root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        ).validate(value)


class MemoryTokens:
    """The ``AdminTokenRepo`` port in memory, counting reads and touches."""

    def __init__(self) -> None:
        self.by_hash: dict[str, AdminToken] = {}
        self.reads = 0
        self.touches = 0

    async def put_admin_token(self, token: AdminToken, digest: str) -> None:
        self.by_hash[digest] = token

    async def admin_token_by_hash(self, digest: str) -> AdminToken | None:
        self.reads += 1
        return self.by_hash.get(digest)

    async def list_admin_tokens(self) -> list[AdminToken]:
        return list(self.by_hash.values())

    async def revoke_admin_token(self, token_id: str, at: datetime) -> bool:
        for digest, token in self.by_hash.items():
            if token.id == token_id and token.active:
                self.by_hash[digest] = AdminToken(
                    id=token.id,
                    name=token.name,
                    tenant_id=token.tenant_id,
                    created_at=token.created_at,
                    revoked_at=at,
                )
                return True
        return False

    async def touch_admin_token(self, token_id: str, at: datetime) -> None:
        self.touches += 1


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{\w+\}", template)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


def problem_shape(answer: httpx.Response) -> dict[str, Any]:
    """A problem without what differs per request (its request id)."""
    body = dict(answer.json())
    body.pop("request_id")
    return {"status": answer.status_code, **body}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
