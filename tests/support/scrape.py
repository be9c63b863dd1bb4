"""Reading a keyturn server's ``/metrics`` as Prometheus does: scraped over HTTP and parsed with
the client library's own parser (``text_string_to_metric_families``)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def scrape_text(endpoint: str, token: str | None = None) -> str:
    """The body of ``GET /metrics`` (which must answer 200)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = httpx.get(f"http://{endpoint}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def parse(text: str) -> dict[str, Metric]:
    """Families by name (a counter's name without ``_total``, as the parser gives it)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(
    families: Mapping[str, Metric], sample: str, labels: Mapping[str, str] | None = None
) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels`` (0 if none)."""
    family = sample
    for suffix in ("_total", "_count", "_sum", "_bucket", "_created"):
        if sample.endswith(suffix) and sample[: -len(suffix)] in families:
            family = sample[: -len(suffix)]
    found = families.get(family)
    if found is None:
        return 0.0
    wanted = dict(labels or {})
    return sum(
        s.value
        for s in found.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in wanted.items())
    )
