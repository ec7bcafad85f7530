"""Schemathesis against ``/openapi.json`` of the whole service (the real policy agent: tiny random
CLIP over the real gallery), bounded and on loopback only: every field that takes a URL is given
loopback or private literal addresses the server must refuse (no DNS, no connection leaves the
machine), and only data that fits the schema is generated (schema-violating data could put a host
name where the URL goes). No answer is a 5xx, and every status the service answers is in its
OpenAPI document. About 200 requests, 15 per operation, in some 20 seconds."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.agent.web.conftest import serve_app

pytestmark = pytest.mark.slow

# literal addresses the server's URL policy refuses before any connection; none needs DNS
REFUSED_URLS = [
    "http://127.0.0.1:9/photo.jpg",
    "http://[::1]:9/photo.png",
    "http://10.0.0.1/photo.jpg",
    "http://169.254.169.254/latest/meta-data",
    "http://192.168.1.1:8080/x.webp",
    "ftp://127.0.0.1/photo.jpg",
    "not a url",
]


def loopback_only(node: Any) -> Any:
    """The schema with every ``url`` property an enum of refused addresses (recursively)."""
    if isinstance(node, dict):
        out = {k: loopback_only(v) for k, v in node.items()}
        props = out.get("properties")
        if isinstance(props, dict) and "url" in props:
            props["url"] = {"type": "string", "enum": REFUSED_URLS}
        return out
    if isinstance(node, list):
        return [loopback_only(v) for v in node]
    return node


@pytest.fixture(scope="module")
def fuzz_url(web_agent, web_threads):
    with serve_app(web_agent, web_threads, service_allow_private_urls=False) as url:
        yield url


EXAMPLES = 15  # per operation: about 200 requests in all


def test_no_5xx_and_every_status_is_documented(fuzz_url):
    """Before: the 400, 404, 413, 415, 503 and 504 answers were missing from the OpenAPI document."""
    import httpx

    raw = httpx.get(f"{fuzz_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(loopback_only(raw))
    seen: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: Any) -> None:
            response = case.call_and_validate(base_url=fuzz_url, checks=[not_a_server_error, status_code_conformance])
            seen.setdefault(case.operation.label, set()).add(response.status_code)

        check()
    statuses = set().union(*seen.values())
    assert {200, 400, 422} <= statuses, seen  # accepted, bad JSON or refused URLs, invalid photos
