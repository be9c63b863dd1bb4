"""The admin API's fleet-job routes: start a fleet rotation, read it and its targets, pause,
resume and abort it (``keyturn.service.fleet``). A scoped token starts and sees only its
tenant's jobs; another tenant's job is answered as one that does not exist. Passwords never
appear in an answer: the CLI shows them on a terminal, or they are delivered to the secrets.
"""

from __future__ import annotations

from typing import Any

from keyturn.api.handlers import Call
from keyturn.core.errors import InternalError, NotFound
from keyturn.core.fleet import (
    FleetJob,
    FleetOptions,
    FleetTarget,
    Selector,
    Threshold,
    parse_accounts,
    parse_labels,
)
from keyturn.core.model import Product
from keyturn.service.context import Answer
from keyturn.service.fleet import FleetJobs


def _fleet(call: Call) -> FleetJobs:
    if call.fleet is None:
        raise InternalError("fleet jobs are not served here")
    return call.fleet


def job_view(job: FleetJob) -> dict[str, Any]:
    s = job.selector
    return {
        "id": job.id,
        "tenant": job.tenant_id,
        "state": str(job.state),
        "reason": job.reason,
        "waves": job.waves,
        "counts": job.counts.as_dict(),
        "selector": {
            "product": None if s.product is None else s.product.value,
            "instances": s.instances,
            "region": s.region,
            "accounts": {str(k): v for k, v in s.accounts.items()},
            "labels": dict(s.labels),
        },
        "canary": job.options.canary,
        "max_in_flight": job.options.max_in_flight,
        "stop_after_failures": str(job.options.stop_after),
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }


def target_view(t: FleetTarget) -> dict[str, Any]:
    return {
        "seq": t.seq,
        "instance_id": t.instance_id,
        "product": t.product.value,
        "account": t.account,
        "wave": t.wave,
        "state": str(t.state),
        "reason": t.reason,
        "task_id": t.task_id,
        "attempts": t.attempts,
        "delivered_to": t.delivered_to,
        "flow_id": t.flow_id,
    }


async def start_job(call: Call) -> Answer:
    body = call.body
    tenant = body["tenant"]
    if not call.scope.sees(tenant):
        raise NotFound(f"tenant {tenant!r} does not exist")
    product = body.get("product")
    selector = Selector(
        tenant_id=tenant,
        product=None if product is None else Product(product),
        instances=body.get("instances"),
        region=body.get("region"),
        accounts=parse_accounts(list(body.get("accounts", []))),
        labels=parse_labels(list(body.get("labels", []))),
    )
    options = FleetOptions(
        canary=int(body.get("canary", 1)),
        max_in_flight=int(body.get("max_in_flight", 8)),
        stop_after=Threshold.parse(str(body.get("stop_after_failures", "0"))),
        paused=bool(body.get("paused", False)),
    )
    return Answer(job_view(await _fleet(call).start(selector, options)))


async def list_jobs(call: Call) -> Answer:
    tenant = call.scope.tenant_id or call.query.get("tenant")
    found = await _fleet(call).jobs(tenant, int(call.query["limit"]))
    return Answer({"items": [job_view(j) for j in found]})


async def get_job(call: Call) -> Answer:
    return Answer(job_view(await _fleet(call).status(call.path["job_id"], call.scope.tenant_id)))


async def list_targets(call: Call) -> Answer:
    fleet = _fleet(call)
    job = await fleet.status(call.path["job_id"], call.scope.tenant_id)
    after, limit = int(call.query["after"]), int(call.query["limit"])
    page = await fleet.targets(job.id, after_seq=after, limit=limit)
    return Answer(
        {
            "items": [target_view(t) for t in page],
            "next_after": page[-1].seq if len(page) == limit else None,
        }
    )


async def pause_job(call: Call) -> Answer:
    return Answer(job_view(await _fleet(call).pause(call.path["job_id"], call.scope.tenant_id)))


async def resume_job(call: Call) -> Answer:
    return Answer(job_view(await _fleet(call).resume(call.path["job_id"], call.scope.tenant_id)))


async def abort_job(call: Call) -> Answer:
    return Answer(job_view(await _fleet(call).abort(call.path["job_id"], call.scope.tenant_id)))
