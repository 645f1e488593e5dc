"""(e) Our HTTP codec against the `cloudevents` SDK 2.x: parse + serialize, events/s.

Same work on both sides: a 1 KB JSON event with 8 attributes, decoded from binary-mode HTTP
headers and body, then encoded back to binary mode.
"""

from __future__ import annotations

import json
import time

from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_http_event,
    to_binary_event,
    to_structured_event,
)

from bench.report import Row, best_of, rate
from brokers.codec import from_http, to_binary, to_structured

N = 20_000
DATA = json.dumps(
    {"order": {"id": "o-1", "lines": [{"sku": f"s{i}", "qty": i} for i in range(30)]}}
)
HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "a1b2c3",
    "ce-source": "/shop/orders",
    "ce-type": "com.example.order.created",
    "ce-subject": "o-1",
    "ce-time": "2026-11-22T10:00:00Z",
    "ce-tenant": "acme",
    "content-type": "application/json",
}
BODY = DATA.encode()
STRUCTURED_HEADERS = {"content-type": "application/cloudevents+json"}
STRUCTURED = json.dumps(
    {
        **{k[3:]: v for k, v in HEADERS.items() if k.startswith("ce-")},
        "datacontenttype": "application/json",
        "data": json.loads(DATA),
    }
).encode()


def _ours() -> float:
    start = time.perf_counter()
    for _ in range(N):
        _, (event,) = from_http(HEADERS, BODY)
        to_binary(event)
    return rate(N, time.perf_counter() - start)


def _sdk() -> float:
    start = time.perf_counter()
    for _ in range(N):
        event = from_http_event(HTTPMessage(headers=HEADERS, body=BODY))
        to_binary_event(event)
    return rate(N, time.perf_counter() - start)


def _ours_structured() -> float:
    start = time.perf_counter()
    for _ in range(N):
        _, (event,) = from_http(STRUCTURED_HEADERS, STRUCTURED)
        to_structured(event)
    return rate(N, time.perf_counter() - start)


def _sdk_structured() -> float:
    start = time.perf_counter()
    for _ in range(N):
        event = from_http_event(HTTPMessage(headers=STRUCTURED_HEADERS, body=STRUCTURED))
        to_structured_event(event)
    return rate(N, time.perf_counter() - start)


def run() -> list[Row]:
    rows = []
    for name, ours_fn, sdk_fn in [
        ("binary mode", _ours, _sdk),
        ("structured mode (both parse the JSON data)", _ours_structured, _sdk_structured),
    ]:
        sdk = best_of(3, sdk_fn)
        ours = best_of(3, ours_fn)
        rows.append(
            Row(
                "codec",
                f"cemesh parse+serialize, {name}, 1 KB JSON",
                ours,
                "ev/s",
                "cloudevents 2.x SDK",
                sdk,
                ">= 2.0x",
                ours >= 2 * sdk,
            )
        )
    return rows


if __name__ == "__main__":
    from bench.report import render_markdown

    print(render_markdown(run()))
