"""The request a log record belongs to: a context variable the signed-call pipeline sets.

``keyturn.dialects.pipeline`` opens a ``RequestContext`` for each vendor call and fills it in
as it learns more (the tenant once the signature verified, the action once routed); a log
formatter (``keyturn.logjson``) reads it for every record, so a line logged anywhere below the
pipeline names its request without each call site passing it along. asyncio copies context
variables into the tasks a request starts, so a task the call queued logs under the request
that created it. Pure standard library.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestContext:
    """What the logs may say about the request being served: its id, the vendor, and once
    known, the authenticated tenant and the routed (known) action. Never a secret."""

    request_id: str
    vendor: str
    tenant: str = ""
    action: str = ""
    #: The task the call queued or ran, once answered.
    task_id: int | None = None


#: The request being served in this context, if any.
CURRENT_REQUEST: ContextVar[RequestContext | None] = ContextVar("keyturn_request", default=None)
