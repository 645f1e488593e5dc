"""The three consumers of the dispatch-hop benchmark, each run as its own process:

    python -m bench.consumers cemesh|handwritten|faststream|faststream-ack-first PREFIX SINK_URL

Each consumes the trigger queue `{PREFIX}.default.bench` (already filled), POSTs every event to
the sink in binary mode (`ce-` headers, `content-type`, the body), and acks it after a 2xx, until
it is stopped (SIGTERM). They print `ready` once subscribed. The benchmark times them at the sink
(first to last arrival), so none of them is instrumented.

- `cemesh`: `Mesh.build` + `Mesh.start` with `cemesh up`'s settings (RabbitBroker, Dispatcher,
  MeshTransport, the memory ledger), everything but the HTTP server; parallelism 100 (the default).
- `handwritten`: aio-pika, prefetch 100, one aiohttp session; the least a consumer can do.
- `faststream`: FastStream's RabbitBroker in its fastest configuration that still acks after the
  POST: prefetch 100 (aiormq runs each delivery in its own task, so this is the concurrency),
  `apply_types=False` (no fast_depends), `logger=None`, a decoder that hands the handler the raw
  aio-pika message (no body decoding), `no_reply`, `AckPolicy.NACK_ON_ERROR`, one aiohttp session.
- `faststream-ack-first`: the same with `AckPolicy.ACK_FIRST` (consume with `no_ack`): faster,
  but a crash loses everything prefetched; not the same guarantee, shown for reference.

All of them run on the default asyncio event loop, as `cemesh up` does.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bench.workload import AMQP_URL

PREFETCH = 100


def _queue(prefix: str) -> str:
    return f"{prefix}.default.bench"


def _binary(headers: dict[str, Any] | None, content_type: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if key.startswith("ce-"):
            out[key] = value.decode() if isinstance(value, bytes) else str(value)
    if content_type:
        out["content-type"] = content_type
    return out


async def handwritten(prefix: str, sink: str, stop: asyncio.Event) -> None:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URL)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=PREFETCH))
    async with connection, session:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(_queue(prefix), ensure=True)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            headers = _binary(message.headers, message.content_type)
            try:
                async with session.post(sink, data=message.body, headers=headers) as response:
                    await response.read()
                    ok = 200 <= response.status < 300
            except aiohttp.ClientError:
                ok = False
            if ok:
                await message.ack()
            else:
                await message.nack(requeue=True)

        await queue.consume(on_message)
        print("ready", flush=True)
        await stop.wait()


async def faststream(prefix: str, sink: str, stop: asyncio.Event, *, ack_first: bool) -> None:
    from faststream import AckPolicy
    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    broker = RabbitBroker(
        AMQP_URL,
        default_channel=Channel(prefetch_count=PREFETCH),
        logger=None,
        apply_types=False,
        graceful_timeout=None,
    )
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=PREFETCH))

    async def raw(message: Any) -> Any:
        return message.raw_message  # no JSON decoding: the handler gets the aio-pika message

    @broker.subscriber(
        RabbitQueue(_queue(prefix), declare=False),
        decoder=raw,
        no_reply=True,
        ack_policy=AckPolicy.ACK_FIRST if ack_first else AckPolicy.NACK_ON_ERROR,
    )
    async def handle(message: Any) -> None:
        headers = _binary(message.headers, message.content_type)
        async with session.post(sink, data=message.body, headers=headers) as response:
            await response.read()
            if not 200 <= response.status < 300:
                raise RuntimeError(f"sink answered {response.status}")  # nack, requeue

    async with session:
        await broker.start()
        print("ready", flush=True)
        await stop.wait()
        await broker.stop()


async def cemesh(prefix: str, sink: str, stop: asyncio.Event) -> None:
    import tempfile

    from bench.procs import mesh_config
    from gateway.mesh import Mesh, load_mesh
    from gateway.settings import Settings

    base = sink.rsplit("/", 1)[0]
    with tempfile.TemporaryDirectory(prefix="cemesh-bench-") as tmp:
        config = mesh_config(Path(tmp), base)
        settings = Settings.model_validate(
            {
                "config": config,
                "functions": config / "functions",
                "broker_url": AMQP_URL,
                "broker_prefix": prefix,
            }
        )
        mesh = Mesh.build(settings, load_mesh(settings))
        await mesh.start()
        print("ready", flush=True)
        try:
            await stop.wait()
        finally:
            await mesh.stop()


async def main(kind: str, prefix: str, sink: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if kind == "cemesh":
        await cemesh(prefix, sink, stop)
    elif kind == "handwritten":
        await handwritten(prefix, sink, stop)
    elif kind == "faststream":
        await faststream(prefix, sink, stop, ack_first=False)
    elif kind == "faststream-ack-first":
        await faststream(prefix, sink, stop, ack_first=True)
    else:
        raise SystemExit(f"unknown consumer {kind}")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
