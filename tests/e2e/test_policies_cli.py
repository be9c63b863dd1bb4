"""``keyturn policies`` as a user runs it on a data dir: named policies, keys created with
``--policy``, inline documents, and ``policies check`` explaining an allow, an implicit deny, an
explicit deny and an administrator key (exit 0 when allowed, 1 when denied)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.cli import keyturn_cli

TENANT = "1300000001"
ALLOWED = f"qcs::redis:ap-guangzhou:uin/{TENANT}:instance/crs-allowed01"
OTHER = f"qcs::redis:ap-guangzhou:uin/{TENANT}:instance/crs-other0001"


def keyturn(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return keyturn_cli(data_dir, *args, env={"COLUMNS": "200"})


def key_id_of(output: str) -> str:
    return output.split("SecretId", 1)[1].split()[0]


def test_policies_check_explains_allow_and_deny(tmp_path: Path) -> None:
    data = tmp_path / "data"
    reset_only = tmp_path / "reset.json"
    reset_only.write_text(
        json.dumps(
            {
                "version": "2.0",
                "statement": [
                    {
                        "effect": "allow",
                        "action": ["redis:ResetPassword"],
                        "resource": [f"qcs::redis:*:uin/{TENANT}:instance/crs-allowed*"],
                    }
                ],
            },
            indent=2,
        )
    )
    deny = tmp_path / "deny.json"
    deny.write_text(
        '{"Version": "1", "Statement": [{"Effect": "Deny", "Action": "redis:*", '
        f'"Resource": "{ALLOWED}"}}]}}'
    )
    assert keyturn(data, "tenants", "add", TENANT).returncode == 0
    put = keyturn(
        data,
        "policies",
        "put",
        "--tenant",
        TENANT,
        "--name",
        "redis-reset",
        "--file",
        str(reset_only),
    )
    assert put.returncode == 0, put.stderr
    created = keyturn(data, "keys", "create", "--tenant", TENANT, "--policy", "redis-reset")
    assert created.returncode == 0, created.stderr
    restricted = key_id_of(created.stdout)

    allowed = keyturn(data, "policies", "check", restricted, "redis:ResetPassword", ALLOWED)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.strip() == "allowed: allowed by statement 0 of policy redis-reset"
    denied = keyturn(data, "policies", "check", restricted, "redis:ResetPassword", OTHER)
    assert denied.returncode == 1
    assert denied.stdout.strip() == ("denied: no statement allows this action on this resource")

    assert keyturn(data, "policies", "set-inline", restricted, "--file", str(deny)).returncode == 0
    explicit = keyturn(data, "policies", "check", restricted, "redis:ResetPassword", ALLOWED)
    assert explicit.returncode == 1
    assert explicit.stdout.strip() == "denied: explicitly denied by statement 0 of policy (inline)"

    listing = keyturn(data, "policies", "list")
    assert "redis-reset" in listing.stdout and restricted in listing.stdout
    shown = keyturn(data, "policies", "show", restricted)
    assert "inline, redis-reset" in shown.stdout and '"Deny"' in shown.stdout
    # A policy in use cannot be removed; a bad document is refused naming what is wrong.
    refused = keyturn(data, "policies", "remove", "--tenant", TENANT, "--name", "redis-reset")
    assert refused.returncode == 2 and restricted in refused.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"statement": [{"effect": "maybe", "action": "*", "resource": "*"}]}')
    bad = keyturn(data, "policies", "set-inline", restricted, "--file", str(broken))
    assert bad.returncode == 2 and "effect must be allow or deny" in bad.stderr

    # clear: back to administrator, which check explains too.
    assert keyturn(data, "policies", "clear", restricted).returncode == 0
    admin = keyturn(data, "policies", "check", restricted, "redis:ResetPassword", OTHER)
    assert admin.returncode == 0
    assert admin.stdout.strip() == "allowed: administrator: the key has no policy"
    elsewhere = "qcs::redis:ap-guangzhou:uin/1300000002:instance/crs-other0001"
    foreign = keyturn(data, "policies", "check", restricted, "redis:ResetPassword", elsewhere)
    assert f"only reach resources of tenant {TENANT}" in foreign.stdout
    removed = keyturn(data, "policies", "remove", "--tenant", TENANT, "--name", "redis-reset")
    assert removed.returncode == 0, removed.stderr
