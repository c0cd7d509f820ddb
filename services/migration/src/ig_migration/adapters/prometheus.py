"""One instant PromQL query, for ACA metrics whose source is Prometheus."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request


def _query(base_url: str, promql: str, timeout: float) -> float:
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus query failed: {body.get('error', body)}")
    result = body["data"]["result"]
    if not result:
        raise LookupError(f"Prometheus returned no series for {promql}")
    return float(result[0]["value"][1])


async def instant_value(base_url: str, promql: str, deadline_seconds: float = 5.0) -> float:
    return await asyncio.to_thread(_query, base_url, promql, deadline_seconds)
