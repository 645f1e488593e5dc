"""Faults: connections killed, the network cut or frozen, RabbitMQ restarted, with counts.

Connections are killed with `rabbitmqctl close_connection` (what `close_all_connections` does,
limited to this test's connections so other users of the shared server are not disturbed).
Cuts and freezes go through a small TCP proxy the test controls. The restart test stops the
whole RabbitMQ application, so it only runs with CEMESH_TEST_RABBITMQ_RESTART=1 and always
starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

from brokers.base import Message
from brokers.errors import BrokerUnavailable
from tests.contract.conftest import (
    BROKER,
    Fleet,
    Inbox,
    amqp_url,
    event,
    eventually,
    kill_connections,
    mesh,
    rabbitmqctl,
    trigger,
)

pytestmark = pytest.mark.connected


class Proxy:
    """A TCP proxy to RabbitMQ that can cut every link, refuse new ones, or freeze traffic."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.refusing = False
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self.refusing:
                return
            up_reader, upstream = await asyncio.open_connection(self.host, self.port)
            self.writers.add(upstream)
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, writer))
        except OSError:
            pass
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self.writers.discard(end)
                    end.transport.abort()
            self.tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()

    async def close(self) -> None:
        self.flowing.set()
        if self.server is not None:
            self.server.close()
        self.cut()
        if self.tasks:  # the links end on their own once cut
            await asyncio.wait(set(self.tasks), timeout=5)
        if self.server is not None:
            await self.server.wait_closed()


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    target = urlsplit(amqp_url())
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_an_outage_fails_publish_fast_and_everything_resumes(
    fleet: Fleet, proxy: Proxy
) -> None:
    t = trigger("outage", parallelism=20)
    broker = await fleet.new(mesh(t), url=proxy.url)
    inbox = Inbox()
    await broker.consume(t, inbox)
    before = event(1)
    await broker.publish(BROKER, [before])
    assert (await inbox.next()).event.id == before.id

    proxy.refusing = True
    proxy.cut()
    await eventually(lambda: not broker.ready, 5)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as failure:
        await broker.publish(BROKER, [event(2)])
    assert time.monotonic() - started < 0.2
    assert failure.value.retry_after > 0
    await asyncio.sleep(1.0)  # reconnection attempts are refused meanwhile
    assert not broker.ready

    proxy.refusing = False
    await eventually(lambda: broker.ready, 15)
    after = event(3)
    await broker.publish(BROKER, [after])
    assert (await inbox.next()).event.id == after.id  # the consumer came back on its own


async def test_a_frozen_network_bounds_publish_by_its_timeout(fleet: Fleet, proxy: Proxy) -> None:
    t = trigger("frozen")
    broker = await fleet.new(mesh(t), url=proxy.url, publish_timeout=1.0)
    proxy.flowing.clear()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="did not confirm"):
        await broker.publish(BROKER, [event(1)])
    assert 0.9 <= time.monotonic() - started < 2.0
    proxy.flowing.set()
    await broker.publish(BROKER, [event(2)])


@dataclass
class Flow:
    """Publishers that retry until confirmed, a consumer that counts what it receives."""

    total: int
    confirmed: list[str] = field(default_factory=list)
    received: Counter[str] = field(default_factory=Counter)
    unavailable: int = 0
    slowest_failure: float = 0.0
    not_ready_seen: bool = False

    async def handler(self, message: Message) -> None:
        self.received[message.event.id] += 1
        await message.ack()

    async def publish(self, broker: object, workers: int = 8, pace: float = 0.004) -> None:
        async def worker(first: int) -> None:
            for index in range(first, self.total, workers):
                one = event(index)
                while True:
                    started = time.monotonic()
                    try:
                        await broker.publish(BROKER, [one])  # type: ignore[attr-defined]
                    except BrokerUnavailable:
                        self.unavailable += 1
                        self.slowest_failure = max(self.slowest_failure, time.monotonic() - started)
                        await asyncio.sleep(0.05)
                        continue
                    self.confirmed.append(one.id)
                    break
                await asyncio.sleep(pace)

        await asyncio.gather(*(worker(w) for w in range(workers)))

    async def watch(self, broker: object) -> None:
        while True:
            if not broker.ready:  # type: ignore[attr-defined]
                self.not_ready_seen = True
            await asyncio.sleep(0.01)

    def report(self) -> str:
        duplicates = sum(count - 1 for count in self.received.values())
        lost = len(set(self.confirmed) - set(self.received))
        return (
            f"confirmed={len(self.confirmed)} received={len(self.received)} lost={lost} "
            f"duplicates={duplicates} publish_failures={self.unavailable} "
            f"slowest_failure={self.slowest_failure:.3f}s"
        )


async def test_killed_connections_lose_no_confirmed_event(
    fleet: Fleet, record_property: Callable[[str, object], None]
) -> None:
    t = trigger("flowing", parallelism=50)
    consumer = await fleet.new(mesh(t))
    prefix = consumer.names.prefix
    publisher = await fleet.new(mesh(t), prefix=prefix)
    flow = Flow(total=3000)
    await consumer.consume(t, flow.handler)
    watcher = asyncio.create_task(flow.watch(publisher))
    producing = asyncio.create_task(flow.publish(publisher))
    kills = 0
    try:
        for _ in range(3):
            await asyncio.sleep(0.4)
            kills += await kill_connections(prefix)
        await producing
        await eventually(lambda: set(flow.received) >= set(flow.confirmed), 60)
    finally:
        watcher.cancel()
        producing.cancel()
        await asyncio.gather(watcher, producing, return_exceptions=True)
    print(f"\nkilled {kills} connections: {flow.report()}")
    record_property("faults", flow.report())
    assert kills >= 6  # both replicas, three times
    assert len(flow.confirmed) == flow.total
    assert set(flow.confirmed) <= set(flow.received)
    assert flow.not_ready_seen
    assert flow.slowest_failure < 3.5
    await eventually(lambda: publisher.ready and consumer.ready, 15)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("CEMESH_TEST_RABBITMQ_RESTART") != "1",
    reason="restarts the shared RabbitMQ; set CEMESH_TEST_RABBITMQ_RESTART=1",
)
async def test_a_rabbitmq_restart_loses_no_confirmed_event(
    fleet: Fleet, record_property: Callable[[str, object], None]
) -> None:
    t = trigger("restarted", parallelism=50)
    consumer = await fleet.new(mesh(t))
    publisher = await fleet.new(mesh(t), prefix=consumer.names.prefix)
    flow = Flow(total=2000)
    await consumer.consume(t, flow.handler)
    watcher = asyncio.create_task(flow.watch(publisher))
    producing = asyncio.create_task(flow.publish(publisher, pace=0.01))
    started = time.monotonic()
    try:
        await asyncio.sleep(0.5)
        await rabbitmqctl("stop_app", timeout=30)
        await asyncio.sleep(1.0)
        assert not publisher.ready
        with pytest.raises(BrokerUnavailable):
            await publisher.publish(BROKER, [event(-1)])
    finally:
        await rabbitmqctl("start_app", timeout=60)
        with contextlib.suppress(RuntimeError):
            await rabbitmqctl("await_startup", timeout=60)
    try:
        await eventually(lambda: publisher.ready and consumer.ready, 30)
        await producing
        await eventually(lambda: set(flow.received) >= set(flow.confirmed), 30)
    finally:
        watcher.cancel()
        producing.cancel()
        await asyncio.gather(watcher, producing, return_exceptions=True)
    print(f"\nrestart after {time.monotonic() - started:.1f}s: {flow.report()}")
    record_property("restart", flow.report())
    assert len(flow.confirmed) == flow.total
    assert set(flow.confirmed) <= set(flow.received)
    assert time.monotonic() - started < 60


async def test_a_silently_dead_connection_is_noticed_by_heartbeats(
    fleet: Fleet, proxy: Proxy
) -> None:
    t = trigger("silent")
    broker = await fleet.new(mesh(t), url=proxy.url, heartbeat=1)
    inbox = Inbox()
    await broker.consume(t, inbox)
    proxy.flowing.clear()  # no FIN, no RST: only missing heartbeats tell
    started = time.monotonic()
    await eventually(lambda: not broker.ready, 15)
    noticed = time.monotonic() - started
    proxy.flowing.set()
    await eventually(lambda: broker.ready, 15)
    sent = event(1)
    await broker.publish(BROKER, [sent])
    assert (await inbox.next()).event.id == sent.id
    print(f"\nsilent death noticed after {noticed:.1f}s")
