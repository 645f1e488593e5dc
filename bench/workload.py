"""The one message every RabbitMQ benchmark sends, and where the benchmarks find RabbitMQ.

A 1 KB JSON order with 8 CloudEvents attributes carried as `ce-` headers (`specversion`, `id`,
`source`, `type`, `subject`, `time`, `tenant`, `sentat`) plus `content-type`, the shape the
baselines in ../shared/BASELINES.md were measured with. `sentat` is the sender's
`time.time_ns()`: the sink subtracts it from its own clock (same machine) to get the latency.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any, Final

RUN: Final = uuid.uuid4().hex[:8]
"""Makes event ids unique per process: the gateway drops a (source, id) it accepted before."""
AMQP_URL: Final = os.environ.get("CEMESH_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
TYPE: Final = "com.example.order.created"
SOURCE: Final = "/shop/orders"
CONTENT_TYPE: Final = "application/json"
SENT_AT: Final = "sentat"


def _data() -> bytes:
    lines = [{"sku": f"sku-{i:04d}", "qty": i % 7 + 1, "price": 9.99 + i} for i in range(19)]
    order = {"order": {"id": "o-1", "customer": "c-42", "lines": lines}}
    body = json.dumps(order, separators=(",", ":"))
    pad = 1024 - len(body) - len(',"note":""')
    order["order"]["note"] = "x" * max(pad, 0)
    return json.dumps(order, separators=(",", ":")).encode()


DATA: Final = _data()
DATA_JSON: Final = json.loads(DATA)


def attributes(index: int, sent_at: int | None = None) -> dict[str, str]:
    """The 8 context attributes of event `index` (`datacontenttype` apart)."""
    return {
        "specversion": "1.0",
        "id": f"bench-{RUN}-{index}",
        "source": SOURCE,
        "type": TYPE,
        "subject": "o-1",
        "time": "2026-11-22T10:00:00Z",
        "tenant": "acme",
        SENT_AT: str(sent_at if sent_at is not None else time.time_ns()),
    }


def binary_headers(index: int) -> dict[str, str]:
    """HTTP binary mode: `ce-` headers and the content type."""
    headers = {f"ce-{k}": v for k, v in attributes(index).items()}
    headers["content-type"] = CONTENT_TYPE
    return headers


def structured(index: int) -> dict[str, Any]:
    """One event of a batch (JSON event format), data as JSON."""
    return {**attributes(index), "datacontenttype": CONTENT_TYPE, "data": DATA_JSON}


def structured_text(index: int) -> str:
    """`structured(index)` as JSON text, without serializing the constant data every time (the
    load generator's CPU is taken from what it measures)."""
    head = json.dumps({**attributes(index), "datacontenttype": CONTENT_TYPE})
    return f'{head[:-1]}, "data": {DATA.decode()}}}'


def unique_prefix(what: str) -> str:
    return f"cemesh-bench-{what}-{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
