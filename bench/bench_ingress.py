"""(a) Raw aio-pika publishing, the ceiling, and (b) the gateway's ingress into RabbitMQ.

What it answers: how much of what RabbitMQ can take from one Python process does `cemesh up`
pass on, with its durability promise (persistent messages, publisher confirms awaited before
the 202)? Targets (issue 3): single-event requests >= 0.6x the ceiling, 100-event batches
>= 0.9x.

(a) publishes `RAW_EVENTS` messages (1 KB JSON, 8 `ce-` headers, persistent) through a headers
exchange into a quorum queue with aio-pika, `WINDOW` confirms outstanding at a time, and times
them in this process. (b) runs `cemesh up --broker amqp://...` as a child process (unique
`CEMESH_BROKER_PREFIX`, a config with broker default/default and no trigger) and drives it with
`bench/loadgen.py` in another process (aiohttp): binary-mode single events at
`SINGLE_CONCURRENCY` requests in flight, then 100-event batches (`application/cloudevents-batch
+json`) at `BATCH_CONCURRENCY`, for `WARMUP + DURATION` seconds each, counting the events
accepted (202) in the last `DURATION` seconds. With no trigger nothing would be stored, so the
benchmark binds its own quorum queue to the broker's exchange: RabbitMQ does the same work for
(a) and (b), and nothing consumes during the measurement. Queues are purged between runs.

(a), single and batch take turns, in a rotating order, `REPEATS` rounds; each figure is the best of
its runs. Beside events/s, the CPU time per event of the publishing process (the benchmark itself
for (a), the `cemesh up` process for (b), read from `/proc`) over the whole run, the lowest of its
runs: it says what the work costs whatever else the shared machine was doing.
Run: `python -m bench ingress`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from bench.procs import Mesh, OtherLoad, cleanup, cpu_seconds, loadgen, running
from bench.report import Row, best_runs
from bench.workload import AMQP_URL, CONTENT_TYPE, DATA, attributes, unique_prefix

RAW_EVENTS: Final = 20_000
WINDOW: Final = 1000
SINGLE_CONCURRENCY: Final = 64
BATCH_CONCURRENCY: Final = 8
BATCH: Final = 100
WARMUP: Final = 1.0
DURATION: Final = 3.0
REPEATS: Final = 5
SETTLE: Final = 1.0
"""Pause after purging a queue: RabbitMQ cleans up a purged quorum queue in the background."""
SINGLE_TARGET: Final = 0.6
BATCH_TARGET: Final = 0.9


async def declare_queue(exchange: str, queue: str, *, own_exchange: bool) -> None:
    """A quorum queue bound to `exchange` (a headers exchange) matching every message."""
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        if own_exchange:
            await channel.declare_exchange(exchange, aio_pika.ExchangeType.HEADERS, durable=True)
        declared = await channel.declare_queue(
            queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await declared.bind(exchange, routing_key="", arguments={"x-match": "all"})


async def purge(queue: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.get_queue(queue, ensure=False)
        await declared.purge()


async def raw_publish(exchange_name: str, count: int = RAW_EVENTS) -> tuple[float, float]:
    """(a): events/s of aio-pika publishing `count` messages, `WINDOW` confirms pipelined, and
    this process's CPU microseconds per event."""
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        window = asyncio.Semaphore(WINDOW)

        async def one(index: int) -> None:
            async with window:
                headers = {f"ce-{k}": v for k, v in attributes(index).items()}
                message = aio_pika.Message(
                    DATA,
                    headers=headers,  # type: ignore[arg-type]
                    content_type=CONTENT_TYPE,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await exchange.publish(message, routing_key="")

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(count)))
        used = time.process_time() - cpu
        return count / (time.perf_counter() - start), used / count * 1e6


def _ingress(mesh: Mesh, mode: str) -> tuple[float, float]:
    """events/s accepted, and the gateway's CPU microseconds per accepted event."""
    concurrency = SINGLE_CONCURRENCY if mode == "single" else BATCH_CONCURRENCY
    options = ["--mode", mode, "--concurrency", str(concurrency), "--batch", str(BATCH)]
    url = f"{mesh.url}/default/default"
    cpu = cpu_seconds(mesh.pid)
    result = loadgen(url, *options, "--warmup", str(WARMUP), "--duration", str(DURATION))
    used = cpu_seconds(mesh.pid) - cpu
    if result["errors"]:
        raise RuntimeError(f"ingress {mode}: errors {result['errors']}")
    return float(result["rate"]), used / result["accepted"] * 1e6


def measure() -> tuple[dict[str, tuple[float, float]], float]:
    """Per run kind: the best events/s and the lowest CPU microseconds per event; and how busy
    other work kept the machine meanwhile (% of a core)."""
    load = OtherLoad()
    prefix = unique_prefix("ingress")
    raw_exchange, raw_queue = f"{prefix}._bench.raw", f"{prefix}._bench.raw"
    tap = f"{prefix}._bench.tap"
    mesh = Mesh(prefix, sink=None)
    runs: dict[str, list[tuple[float, float]]] = {"raw": [], "single": [], "batch": []}
    try:
        asyncio.run(declare_queue(raw_exchange, raw_queue, own_exchange=True))
        with running(mesh.start()):
            asyncio.run(declare_queue(f"{prefix}.default.default", tap, own_exchange=False))
            kinds = ["raw", "single", "batch"]
            for round_ in range(REPEATS):
                shift = round_ % len(kinds)  # each takes every place in the order
                for kind in kinds[shift:] + kinds[:shift]:
                    if kind == "raw":
                        runs[kind].append(asyncio.run(raw_publish(raw_exchange)))
                        asyncio.run(purge(raw_queue))
                    else:
                        runs[kind].append(_ingress(mesh, kind))
                        asyncio.run(purge(tap))
                    time.sleep(SETTLE)
    finally:
        asyncio.run(cleanup(prefix, queues=[raw_queue, tap], exchanges=[raw_exchange]))
    best = best_runs(runs)
    return best, load.percent()


def run() -> list[Row]:
    best, others = measure()
    (raw, raw_cpu), (single, single_cpu) = best["raw"], best["single"]
    batch, batch_cpu = best["batch"]
    ceiling = "(a) raw aio-pika, same run"
    raw_cpu_name = "(a) raw aio-pika publisher"
    return [
        Row(
            "ingress",
            f"(a) raw aio-pika publish, persistent, quorum, {WINDOW} confirms pipelined",
            raw,
            "ev/s",
            "BASELINES.md (quorum)",
            5310.0,
        ),
        Row(
            "ingress",
            f"(b) cemesh up ingress, single-event binary requests, {SINGLE_CONCURRENCY} in flight",
            single,
            "ev/s",
            ceiling,
            raw,
            f">= {SINGLE_TARGET}x",
            single >= SINGLE_TARGET * raw,
        ),
        Row(
            "ingress",
            f"(b) cemesh up ingress, {BATCH}-event batches, {BATCH_CONCURRENCY} in flight",
            batch,
            "ev/s",
            ceiling,
            raw,
            f">= {BATCH_TARGET}x",
            batch >= BATCH_TARGET * raw,
        ),
        Row("ingress", "(a) CPU per event, raw aio-pika publisher process", raw_cpu, "us"),
        Row(
            "ingress",
            "(b) CPU per event, cemesh up process, single-event requests",
            single_cpu,
            "us",
            raw_cpu_name,
            raw_cpu,
        ),
        Row(
            "ingress",
            f"(b) CPU per event, cemesh up process, {BATCH}-event batches",
            batch_cpu,
            "us",
            raw_cpu_name,
            raw_cpu,
        ),
        Row("machine", "other processes' CPU during the (a)/(b) runs", others, "% of a core"),
    ]


if __name__ == "__main__":
    from bench.report import render_markdown

    print(render_markdown(run()))
