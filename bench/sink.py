"""The HTTP sink the benchmarks deliver to, run as its own process: `python -m bench.sink PORT`.

As cheap per request as we can make it (a bare asyncio protocol with httptools on uvloop), so
that on a 2-core machine it takes as little CPU as possible from what is measured. It answers
every POST with `200` and no body, and records each request's arrival time (`time.time_ns()`)
and, when the request carries a `ce-sentat` header (the sender's `time.time_ns()`), its latency.

Control, on the same port: `GET /_stats?since=NS&until=NS` answers JSON with the total count,
the count that arrived in the window, and the p50/p99/max latency of the events *sent* in the
window (milliseconds); `POST /_reset` forgets everything. Printing `ready` on stdout tells the
parent process it is listening.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from bisect import bisect_left, bisect_right
from urllib.parse import parse_qs, urlsplit

import httptools
import uvloop

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class Record:
    def __init__(self) -> None:
        self.arrived: list[int] = []  # time.time_ns() of each request, in arrival order
        self.latencies: list[tuple[int, int]] = []  # (sent_at, arrived - sent_at)

    def stats(self, since: int, until: int) -> dict[str, float | int]:
        arrived = self.arrived
        window = bisect_right(arrived, until) - bisect_left(arrived, since)
        latencies = sorted(d for sent, d in self.latencies if since <= sent <= until)

        def pct(p: float) -> float:
            if not latencies:
                return 0.0
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1e6

        return {
            "count": len(arrived),
            "first_ns": arrived[0] if arrived else 0,
            "last_ns": arrived[-1] if arrived else 0,
            "window": window,
            "samples": len(latencies),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": latencies[-1] / 1e6 if latencies else 0.0,
        }


class SinkProtocol(asyncio.Protocol):
    def __init__(self, record: Record) -> None:
        self.record = record
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.sent_at: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.sent_at = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 9 and name.lower() == b"ce-sentat":
            self.sent_at = value

    def on_message_complete(self) -> None:
        now = time.time_ns()
        assert self.transport is not None
        if self.url.startswith(b"/_"):
            self.transport.write(self._control())
        else:
            self.record.arrived.append(now)
            if self.sent_at is not None:
                sent = int(self.sent_at)
                self.record.latencies.append((sent, now - sent))
            self.transport.write(OK)
        if not self.parser.should_keep_alive():
            self.transport.close()

    def _control(self) -> bytes:
        url = urlsplit(self.url.decode())
        if url.path == "/_reset":
            self.record.arrived.clear()
            self.record.latencies.clear()
            body = b"{}"
        else:
            query = {k: int(v[0]) for k, v in parse_qs(url.query).items()}
            stats = self.record.stats(query.get("since", 0), query.get("until", 2**63))
            body = json.dumps(stats).encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
        return head.encode() + b"\r\n\r\n" + body


async def main(port: int) -> None:
    record = Record()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(record), "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
