"""A fleet job selected by labels delivers to a managed secret, and CLI steering is audited.

Four real redis-servers in the inventory with labels; one has a ``[[secrets]]`` entry (Tencent
SSM) on its ``default`` account. ``keyturn rotate start --label env=prod --label team=orders``
selects the three instances carrying both labels (``keyturn instances list`` shows them); the
CLI pauses and resumes the job (each an ``admin:*FleetJob`` audit record, as the admin API
writes). The secret's target rotates through the secret's rotation flow: afterwards the SSM
SDK's ``GetSecretValue`` answers the version the job reports, its password logs in and the
old one (now ``ACSPrevious``) does not; the other targets' reported passwords log in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyturn.core.secret_manager import SecretVersion, VersionStage
from tests.support.cli import audit_records, keyturn_cli
from tests.support.fleet import redis_fleet
from tests.support.keyturn_server import TENANT, KeyturnServer
from tests.support.logins import can_login
from tests.support.passwords import USED_PASSWORDS
from tests.support.secret_sdks import ssm_call, ssm_sdk
from tests.support.secrets import staged, versions, wait_for

pytestmark = pytest.mark.engine

NAME = "orders-cache"
LABELS = [
    'env = "prod", team = "orders"',
    'env = "prod", team = "orders"',
    'env = "prod", team = "billing"',
    'env = "prod", team = "orders"',
]


def _inventory(server: KeyturnServer) -> None:
    text = server.config.read_text()
    for n, labels in enumerate(LABELS):
        text += f"""
[[instances]]
id = "crs-label{n:04d}"
tenant = "{TENANT}"
product = "tencent-redis"
region = "ap-guangzhou"
nodes = ["${{KT_FLEET_{n}}}"]
labels = {{ {labels} }}
"""
    text += f"""
[[secrets]]
tenant = "{TENANT}"
name = "{NAME}"
vendor = "tencent-ssm"
instance = "crs-label0001"
account = "default"
rotation = "30d"
"""
    server.config.write_text(text)


def test_labels_select_and_a_secret_receives_the_password(
    make_server: Callable[..., KeyturnServer], tmp_path: Path
) -> None:
    started = time.monotonic()
    with redis_fleet(len(LABELS)) as redises:
        env = {f"KT_FLEET_{n}": r.admin_url() for n, r in enumerate(redises)}
        server = make_server(extra_env=env)
        _inventory(server)
        server.start()
        wait_for(
            lambda: any(VersionStage.CURRENT in v.stages for v in _versions(server)),
            20,
            "the secret's first version",
        )
        old = staged(server, NAME, VersionStage.CURRENT).password.reveal()
        assert can_login(redises[1].port, old)

        listed = keyturn_cli(server.data_dir, "instances", "list", "--tenant", TENANT)
        assert listed.returncode == 0, listed.stderr
        assert "env=prod,team=billing" in listed.stdout

        result = keyturn_cli(
            server.data_dir, "rotate", "start", "--tenant", TENANT,
            "--label", "env=prod", "--label", "team=orders", "--paused",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "3 targets" in result.stdout
        job_id = result.stdout.split("fleet job ")[1].split(":")[0]
        # Written paused: nothing runs until it is resumed (pausing it again keeps it so).
        time.sleep(1.5)  # more than a driving round: a node would have claimed a running job
        review = tmp_path / "review.json"
        status = keyturn_cli(server.data_dir, "rotate", "status", job_id, "--json", str(review))
        assert status.returncode == 3, status.stderr  # the exit code of a paused job
        reviewed: dict[str, Any] = json.loads(review.read_text())
        assert reviewed["job"]["state"] == "paused"
        assert [t["state"] for t in reviewed["targets"]] == ["pending"] * 3
        for verb in ("pause", "resume"):
            steered = keyturn_cli(server.data_dir, "rotate", verb, job_id)
            assert steered.returncode == 0, steered.stderr

        out = tmp_path / "outcomes.json"
        final = keyturn_cli(
            server.data_dir, "rotate", "status", job_id, "--wait", "--json", str(out),
            "--show-passwords",
        )  # fmt: skip
        assert final.returncode == 0, final.stdout + final.stderr
        report: dict[str, Any] = json.loads(out.read_text())
        targets = {t["instance"]: t for t in report["targets"]}
        assert sorted(targets) == ["crs-label0000", "crs-label0001", "crs-label0003"]
        assert all(t["state"] == "succeeded" for t in targets.values()), targets

        # The secret's target went through its flow: the SDK reads what the job reports.
        delivered = targets["crs-label0001"]
        assert "password" not in delivered and delivered["flow_id"].startswith("flow-")
        assert delivered["delivered_to"].startswith(f"secret/{NAME}/version/")
        version = delivered["delivered_to"].rsplit("/", 1)[1]
        current = staged(server, NAME, VersionStage.CURRENT)
        assert current.version_id == version
        # SSM product secrets answer the current version as ``SSM_Current``.
        answer = ssm_call(ssm_sdk(server.endpoint), "GetSecretValue", SecretName=NAME)
        value = json.loads(answer.SecretString)
        USED_PASSWORDS.append(value["Password"])
        assert value["Password"] == current.password.reveal()
        assert can_login(redises[1].port, value["Password"])
        assert not can_login(redises[1].port, old)
        assert staged(server, NAME, VersionStage.PREVIOUS).password.reveal() == old
        for instance in ("crs-label0000", "crs-label0003"):
            password = targets[instance]["password"]
            USED_PASSWORDS.append(password)
            assert can_login(redises[int(instance[-1])].port, password)

        # CLI steering is audited like the admin API's: started, then succeeded.
        for operation in ("PauseFleetJob", "ResumeFleetJob"):
            records = audit_records(server, "search", "--action", f"admin:{operation}")
            assert [r["outcome"] for r in records] in (
                ["started", "succeeded"],
                ["succeeded", "started"],
            )
            assert all(r["resource"] == f"fleet-jobs/{job_id}/{operation[:-8].lower()}"
                       for r in records)  # fmt: skip
            assert all(r["key_id"].startswith("cli:") for r in records)
    print(f"fleet labels and secrets: {time.monotonic() - started:.1f} s")


def _versions(server: KeyturnServer) -> list[SecretVersion]:
    return versions(server, NAME)
