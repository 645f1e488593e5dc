"""The load generator, run as its own process so it never shares an event loop with the gateway:

    python -m bench.loadgen URL --mode single|batch [--concurrency 64] [--duration 4]
                            [--warmup 1] [--rate EVENTS_PER_S] [--batch 100]

Closed loop (no `--rate`): `concurrency` workers each POST, await the answer, POST again, for
`warmup + duration` seconds; only requests *completed* inside the last `duration` seconds count.
Open loop (`--rate`): one single-event request every 1/rate s, whether or not earlier ones were
answered (at most `concurrency` in flight), which is how a steady stream of producers behaves.

Every event carries `ce-sentat` (its send time, `time.time_ns()`), so the sink can measure
end-to-end latency. Prints one JSON line: events accepted (202) in the window and overall,
errors by status, the window's start and end (ns), and events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections import Counter
from typing import Any

import aiohttp
import uvloop

from bench.workload import DATA, binary_headers, structured_text

BATCH_TYPE = "application/cloudevents-batch+json"


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ids = itertools.count()
        self.accepted = 0
        self.in_window = 0
        self.errors: Counter[str] = Counter()
        self.window_start = 0.0
        self.window_end = 0.0
        self.latencies: list[float] = []  # seconds per accepted request, in the window

    def request(self) -> tuple[dict[str, str], bytes]:
        if self.args.mode == "single":
            return binary_headers(next(self.ids)), DATA
        events = ",".join(structured_text(next(self.ids)) for _ in range(self.args.batch))
        return {"content-type": BATCH_TYPE}, f"[{events}]".encode()

    async def post(self, session: aiohttp.ClientSession) -> None:
        headers, body = self.request()
        events = 1 if self.args.mode == "single" else self.args.batch
        sent = time.monotonic()
        try:
            async with session.post(self.args.url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return
        if status != 202:
            self.errors[str(status)] += 1
            return
        self.accepted += events
        now = time.monotonic()
        if self.window_start <= now <= self.window_end:
            self.in_window += events
            self.latencies.append(now - sent)

    async def closed_loop(self, session: aiohttp.ClientSession) -> None:
        async def worker() -> None:
            while time.monotonic() < self.window_end:
                await self.post(session)

        await asyncio.gather(*(worker() for _ in range(self.args.concurrency)))

    async def open_loop(self, session: aiohttp.ClientSession) -> None:
        slots = asyncio.Semaphore(self.args.concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def one() -> None:
            try:
                await self.post(session)
            finally:
                slots.release()

        start = time.monotonic()
        for i in itertools.count():
            due = start + i / self.args.rate
            if due >= self.window_end:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)

    async def run(self) -> dict[str, Any]:
        args = self.args
        connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            now = time.monotonic()
            self.window_start = now + args.warmup
            self.window_end = self.window_start + args.duration
            wall_start = time.time_ns() + int(args.warmup * 1e9)
            if args.rate:
                await self.open_loop(session)
            else:
                await self.closed_loop(session)
        latencies = sorted(self.latencies)

        def pct(p: float) -> float:
            return (
                latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3
                if latencies
                else 0.0
            )

        return {
            "accepted": self.accepted,
            "request_p50_ms": pct(0.5),
            "request_p99_ms": pct(0.99),
            "window_events": self.in_window,
            "seconds": args.duration,
            "rate": self.in_window / args.duration,
            "errors": dict(self.errors),
            "window_start_ns": wall_start,
            "window_end_ns": wall_start + int(args.duration * 1e9),
        }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--mode", choices=["single", "batch"], default="single")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=100)
    return parser.parse_args(argv)


if __name__ == "__main__":
    result = uvloop.run(Load(parse()).run())
    print(json.dumps(result), flush=True)
