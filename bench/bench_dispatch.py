"""(d) The dispatch hop alone: events already queued, consumed, POSTed to the sink, acked.

What it answers: does cemesh's delivery path (RabbitBroker + Dispatcher + MeshTransport, wired
as `cemesh up` wires them) keep up with what a Python user would write instead? Targets (issue
3): cemesh >= 1.0x FastStream in its fastest configuration, and >= 0.8x a hand-written aio-pika
consumer doing the same POST (prefetch 100), the limit.

Each run fills the trigger's quorum queue with `EVENTS` events (1 KB JSON, 8 `ce-` headers,
cemesh's wire format, published with confirms), then starts one consumer process
(`bench/consumers.py`) and times it at the sink, in its own process: events/s between the first and
the last arrival. The consumer is stopped once the sink has them all, and the queue must then be
empty (everything was acked). The consumers take turns, in a rotating order, `REPEATS` rounds, and
each figure is the best of its runs (noise from the shared machine only ever slows a run down). The
consumer process's CPU time per event (from `/proc`, after it said `ready`) is reported too, the
lowest of its runs: it moves much less than events/s when other work shares the machine.
Run: `python -m bench dispatch`.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Final

from bench.procs import (
    PYTHON,
    REPO,
    OtherLoad,
    Sink,
    cleanup,
    cpu_seconds,
    mesh_config,
    stop_process,
)
from bench.report import Row, best_runs
from bench.workload import AMQP_URL, DATA, attributes, unique_prefix

EVENTS: Final = 6_000
REPEATS: Final = 5
KINDS: Final = ("handwritten", "faststream", "faststream-ack-first", "cemesh")
TIMEOUT: Final = 60.0


async def _fill(prefix: str, sink: str, count: int) -> None:
    """Declare the trigger's queue (as cemesh does) and put `count` events in it."""
    import tempfile
    from pathlib import Path

    from brokers.event import Event
    from brokers.rabbitmq.broker import RabbitBroker
    from brokers.triggers import load_config

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(mesh_config(Path(tmp), sink), [], "default")
    broker = RabbitBroker(AMQP_URL, prefix=prefix)
    await broker.open(config)
    try:
        events = [
            Event({**attributes(i), "datacontenttype": "application/json"}, DATA)
            for i in range(count)
        ]
        for start in range(0, count, 1000):
            await broker.publish("default/default", events[start : start + 1000])
    finally:
        await broker.close()


async def _queued(prefix: str) -> int:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{prefix}.default.bench", passive=True)
        count = queue.declaration_result.message_count or 0
        if count:
            await queue.purge()
        return count


def _one(kind: str, prefix: str, sink: Sink) -> tuple[float, float]:
    """events/s of one run, and the consumer's CPU microseconds per event."""
    asyncio.run(_fill(prefix, sink.url, EVENTS))
    sink.reset()
    proc = subprocess.Popen(
        [PYTHON, "-m", "bench.consumers", kind, prefix, f"{sink.url}/orders"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{kind} consumer did not start: {line}{stop_process(proc)}")
        ready = cpu_seconds(proc.pid)
        got = sink.wait_for(EVENTS, TIMEOUT)
        used = cpu_seconds(proc.pid) - ready
    finally:
        output = stop_process(proc)
    if got < EVENTS:
        raise RuntimeError(f"{kind}: only {got}/{EVENTS} delivered in {TIMEOUT:g}s\n{output}")
    stats = sink.stats()
    left = asyncio.run(_queued(prefix))
    if left:
        raise RuntimeError(f"{kind}: {left} events left unacked in the queue")
    rate = (stats["count"] - 1) / ((stats["last_ns"] - stats["first_ns"]) / 1e9)
    return rate, used / EVENTS * 1e6


def measure() -> tuple[dict[str, tuple[float, float]], float]:
    """Per consumer: the best events/s and the lowest CPU microseconds per event; and how busy
    other work kept the machine meanwhile (% of a core)."""
    load = OtherLoad()
    sink = Sink().start()
    prefix = unique_prefix("dispatch")
    runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    try:
        for round_ in range(REPEATS):
            shift = round_ % len(KINDS)  # each consumer takes every place in the order
            for kind in KINDS[shift:] + KINDS[:shift]:
                runs[kind].append(_one(kind, prefix, sink))
                time.sleep(0.5)
    finally:
        sink.stop()
        asyncio.run(cleanup(prefix))
    best = best_runs(runs)
    return best, load.percent()


def run() -> list[Row]:
    best, others = measure()
    (cemesh, cemesh_cpu), (faststream, faststream_cpu) = best["cemesh"], best["faststream"]
    hand, hand_cpu = best["handwritten"]
    ack_first, ack_first_cpu = best["faststream-ack-first"]
    fast = "FastStream, fastest config acking after the POST"
    area = "dispatch"
    return [
        Row(
            area,
            "(d) hand-written aio-pika + aiohttp, prefetch 100: the limit",
            hand,
            "ev/s",
            "BASELINES.md (same work)",
            2600.0,
        ),
        Row(area, f"(d) {fast}", faststream, "ev/s", "BASELINES.md (leanest)", 1980.0),
        Row(
            area,
            "(d) FastStream, ack first (no_ack: at most once; for reference)",
            ack_first,
            "ev/s",
            fast,
            faststream,
        ),
        Row(
            area,
            "(d) cemesh dispatch (RabbitBroker + Dispatcher + MeshTransport)",
            cemesh,
            "ev/s",
            fast,
            faststream,
            ">= 1.0x",
            cemesh >= faststream,
        ),
        Row(
            area,
            "(d) cemesh dispatch (same runs)",
            cemesh,
            "ev/s",
            "hand-written aio-pika consumer",
            hand,
            ">= 0.8x",
            cemesh >= 0.8 * hand,
        ),
        Row(area, "(d) CPU per event, hand-written consumer process", hand_cpu, "us"),
        Row(area, f"(d) CPU per event, {fast}", faststream_cpu, "us", "hand-written", hand_cpu),
        Row(
            area,
            "(d) CPU per event, FastStream ack first",
            ack_first_cpu,
            "us",
            "hand-written",
            hand_cpu,
        ),
        Row(
            area,
            "(d) CPU per event, cemesh consumer process",
            cemesh_cpu,
            "us",
            "hand-written",
            hand_cpu,
        ),
        Row("machine", "other processes' CPU during the (d) runs", others, "% of a core"),
    ]


if __name__ == "__main__":
    from bench.report import render_markdown

    print(render_markdown(run()))
