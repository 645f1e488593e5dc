"""RabbitMQ delivery guarantees beyond the contract: durable retries, crashes, replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter

import pytest

from brokers.base import DeadLetter, Message
from brokers.rabbitmq.wire import WireMessage
from tests.contract.conftest import (
    BROKER,
    REPO_ROOT,
    Fleet,
    Inbox,
    event,
    eventually,
    mesh,
    rabbitmqctl,
    trigger,
)

pytestmark = pytest.mark.connected


async def test_a_pending_retry_survives_the_replica_and_keeps_its_count(fleet: Fleet) -> None:
    t = trigger("durable-retry")
    first = await fleet.new(mesh(t))
    retried = asyncio.Event()

    async def fail(message: Message) -> None:
        await message.retry(1.0, message.event.replace(note="after crash"))
        retried.set()

    await first.consume(t, fail)
    sent = event(1)
    await first.publish(BROKER, [sent])
    await asyncio.wait_for(retried.wait(), 10)
    parked_at = time.monotonic()
    await first.close()  # the replica is gone while the retry waits in RabbitMQ

    second = await fleet.new(mesh(t), prefix=first.names.prefix)
    inbox = Inbox()
    await second.consume(t, inbox)
    again = await inbox.next()
    assert time.monotonic() - parked_at >= 0.9
    assert again.event.id == sent.id
    assert again.attempt == 1
    assert again.event.get("note") == "after crash"


async def test_a_replica_killed_mid_delivery_loses_nothing(fleet: Fleet) -> None:
    t = trigger("killed")
    survivor = await fleet.new(mesh(t))
    prefix = survivor.names.prefix
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        prefix,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert child.stdout is not None
        ready = await asyncio.wait_for(child.stdout.readline(), 30)
        assert ready.strip() == b"consuming"
        sent = event(1)
        await survivor.publish(BROKER, [sent])
        got = await asyncio.wait_for(child.stdout.readline(), 30)
        assert got.decode().split() == ["got", sent.id]
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await child.wait()
    inbox = Inbox()
    await survivor.consume(t, inbox)
    again = await inbox.next(30)
    assert again.event.id == sent.id
    assert again.attempt == 0


CHILD = """
import asyncio, sys
from brokers.rabbitmq.broker import RabbitBroker
from tests.contract.conftest import amqp_url, mesh, trigger

async def main():
    t = trigger("killed")
    broker = RabbitBroker(amqp_url(), prefix=sys.argv[1])
    await broker.open(mesh(t))
    async def hang(message):
        print("got", message.event.id, flush=True)
        await asyncio.Event().wait()
    await broker.consume(t, hang)
    await broker.wait_subscribed(10)
    print("consuming", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_replicas_share_the_work_without_duplicates(fleet: Fleet) -> None:
    t = trigger("shared", parallelism=10)
    one = await fleet.new(mesh(t))
    two = await fleet.new(mesh(t), prefix=one.names.prefix)
    seen: Counter[str] = Counter()
    by: Counter[str] = Counter()

    def handler(name: str) -> Inbox:
        async def record(message: Message) -> None:
            await asyncio.sleep(0.005)
            seen[message.event.id] += 1
            by[name] += 1
            await message.ack()

        return Inbox(record)

    inbox_one, inbox_two = handler("one"), handler("two")
    await one.consume(t, inbox_one)
    await two.consume(t, inbox_two)
    await one.wait_subscribed(10)
    await two.wait_subscribed(10)
    sent = [event(i) for i in range(200)]
    await one.publish(BROKER, sent)
    await eventually(lambda: len(seen) >= len(sent))
    assert set(seen) == {e.id for e in sent}
    assert max(seen.values()) == 1
    assert by["one"] > 0
    assert by["two"] > 0


async def test_strict_fifo_holds_across_replicas(fleet: Fleet) -> None:
    t = trigger("ordered", parallelism=1)
    one = await fleet.new(mesh(t))
    two = await fleet.new(mesh(t), prefix=one.names.prefix)
    order: list[int] = []

    async def record(message: Message) -> None:
        await asyncio.sleep(0.002)
        seq = message.event.get("seq")
        assert isinstance(seq, int)
        order.append(seq)
        await message.ack()

    await one.consume(t, Inbox(record))
    await two.consume(t, Inbox(record))
    await one.publish(BROKER, [event(i) for i in range(60)])
    await eventually(lambda: len(order) >= 60)
    assert order == list(range(60))


async def test_an_undecodable_message_is_parked_not_lost(fleet: Fleet) -> None:
    t = trigger("junk")
    broker = await fleet.new(mesh(t))
    inbox = Inbox()
    await broker.consume(t, inbox)
    junk = WireMessage({"ce-type": "no.specversion"}, b"\xff raw", "application/x-junk")
    await broker._send_to_queue(broker.names.queue(t.key), junk)
    parked: list[DeadLetter] = []
    async with asyncio.timeout(10):
        while not parked:
            parked = await broker.dead_letters(t.key)
    assert [d.event.type for d in parked] == ["dev.cemesh.undecodable"]
    assert parked[0].event.data == b"\xff raw"
    assert parked[0].id == junk.message_id
    assert inbox.received.empty()
    assert await broker.remove_dead_letters(t.key, [parked[0].id]) == 1


async def test_retry_delays_round_up_to_a_shared_delay_queue(fleet: Fleet) -> None:
    t = trigger("bucketed")
    broker = await fleet.new(mesh(t))
    times: list[float] = []

    async def retry_once(message: Message) -> None:
        times.append(time.monotonic())
        if message.attempt == 0:
            await message.retry(0.123)
        else:
            await message.ack()

    inbox = Inbox(retry_once)
    await broker.consume(t, inbox)
    await broker.publish(BROKER, [event(1)])
    await inbox.take(2)
    assert times[1] - times[0] >= 0.123
    listing = await rabbitmqctl("--no-table-headers", "list_queues", "name")
    assert f"{broker.names.prefix}._delay.130ms" in listing.split()
