"""The Broker contract: what the dispatcher and the gateway rely on, on every broker.

Each test runs on the memory broker and on RabbitMQ (`connected`). Filters here are exact
only, the part RabbitMQ evaluates itself; other dialects are the dispatcher's job.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest

from brokers.base import Broker, Message
from brokers.errors import BrokerError, BrokerUnavailable, UnknownBroker
from brokers.event import Event
from tests.contract.conftest import (
    BROKER,
    Inbox,
    OpenBroker,
    event,
    mesh,
    trigger,
    typed,
    typed_events,
)


async def test_round_trip_keeps_typed_attributes_and_data(open_broker: OpenBroker) -> None:
    everything = trigger("everything")
    broker = await open_broker(mesh(everything))
    inbox = Inbox()
    await broker.consume(everything, inbox)
    sent = typed_events()
    await broker.publish(BROKER, sent)
    got = {m.event.id: m for m in await inbox.take(len(sent))}
    for original in sent:
        message = got[original.id]
        assert typed(message.event) == typed(original)
        assert message.event.data == original.data
        assert message.attempt == 0
        assert message.matched


async def test_exact_filters_route_only_matching_events(open_broker: OpenBroker) -> None:
    orders = trigger("orders", {"type": "order.created"})
    eu_orders = trigger("eu-orders", {"type": "order.created", "region": "eu"})
    urgent = trigger("urgent", {"priority": "5"})
    everything = trigger("everything")
    broker = await open_broker(mesh(orders, eu_orders, urgent, everything))
    inboxes = {t.name: Inbox() for t in (orders, eu_orders, urgent, everything)}
    for t in (orders, eu_orders, urgent, everything):
        await broker.consume(t, inboxes[t.name])
    eu = event(1, "order.created", region="eu")
    us = event(2, "order.created", region="us", priority=5)
    other = event(3, "invoice.paid", region="eu")
    await broker.publish(BROKER, [eu, us, other])

    async def ids(name: str, count: int) -> set[str]:
        received = await inboxes[name].take(count)
        await inboxes[name].nothing_more(0.3)
        return {m.event.id for m in received}

    assert await ids("orders", 2) == {eu.id, us.id}
    assert await ids("eu-orders", 1) == {eu.id}
    assert await ids("urgent", 1) == {us.id}  # an int extension matches its canonical text
    assert await ids("everything", 3) == {eu.id, us.id, other.id}


async def test_unknown_broker_and_trigger(open_broker: OpenBroker) -> None:
    broker = await open_broker(mesh(trigger("t")))
    with pytest.raises(UnknownBroker):
        await broker.publish("default/missing", [event(1)])
    with pytest.raises(UnknownBroker):
        await broker.consume(trigger("not-configured"), Inbox())


async def test_publish_on_closed_broker_is_unavailable(open_broker: OpenBroker) -> None:
    broker = await open_broker(mesh(trigger("t")))
    assert broker.ready
    await broker.publish(BROKER, [])  # nothing to do is not an error
    await broker.close()
    assert not broker.ready
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await broker.publish(BROKER, [event(1)])
    assert time.monotonic() - started < 1.0


async def test_retry_redelivers_after_the_delay_with_the_next_attempt(
    open_broker: OpenBroker,
) -> None:
    t = trigger("retried")
    broker = await open_broker(mesh(t))
    seen: list[tuple[float, Message]] = []

    async def fail_once(message: Message) -> None:
        seen.append((time.monotonic(), message))
        if message.attempt == 0:
            await message.retry(0.4, message.event.replace(note="changed"))
        else:
            await message.ack()

    inbox = Inbox(fail_once)
    await broker.consume(t, inbox)
    sent = event(1)
    await broker.publish(BROKER, [sent])
    first, second = await inbox.take(2)
    assert (first.attempt, second.attempt) == (0, 1)
    assert second.event.id == sent.id
    assert second.event.get("note") == "changed"
    assert seen[1][0] - seen[0][0] >= 0.4
    await inbox.nothing_more(0.3)


async def test_retry_without_delay_keeps_counting(open_broker: OpenBroker) -> None:
    t = trigger("counted")
    broker = await open_broker(mesh(t))

    async def fail_twice(message: Message) -> None:
        if message.attempt < 2:
            await message.retry(0)
        else:
            await message.ack()

    inbox = Inbox(fail_twice)
    await broker.consume(t, inbox)
    await broker.publish(BROKER, [event(1)])
    # recorded after the handler settles, so a redelivery may be recorded before its parent
    assert sorted(m.attempt for m in await inbox.take(3)) == [0, 1, 2]


async def test_dead_letters_are_parked_listed_and_removed(open_broker: OpenBroker) -> None:
    t = trigger("parking", parallelism=1)
    broker = await open_broker(mesh(t))

    async def park(message: Message) -> None:
        await message.dead_letter(message.event.replace(knativeerrorcode="500"))

    inbox = Inbox(park)
    await broker.consume(t, inbox)
    sent = [event(i) for i in range(3)]
    await broker.publish(BROKER, sent)
    await inbox.take(3)
    assert await broker.dead_letters("default/nothing-here") == []
    parked = await broker.dead_letters(t.key)
    assert [d.event.id for d in parked] == [e.id for e in sent]
    assert all(d.trigger == t.key and d.event.get("knativeerrorcode") == "500" for d in parked)
    assert len({d.id for d in parked}) == 3
    again = await broker.dead_letters(t.key)  # listing is not consuming, ids are stable
    assert [(d.id, d.event.id) for d in again] == [(d.id, d.event.id) for d in parked]
    assert [d.id for d in await broker.dead_letters(t.key, limit=2)] == [d.id for d in parked[:2]]

    assert await broker.remove_dead_letters(t.key, [parked[1].id, "no-such-id"]) == 1
    assert [d.id for d in await broker.dead_letters(t.key)] == [parked[0].id, parked[2].id]
    assert await broker.remove_dead_letters(t.key, []) == 2
    assert await broker.dead_letters(t.key) == []


async def test_release_redelivers_with_the_same_attempt(open_broker: OpenBroker) -> None:
    t = trigger("released")
    broker = await open_broker(mesh(t))
    released: set[str] = set()

    async def release_first(message: Message) -> None:
        if message.event.id not in released:
            released.add(message.event.id)
            await message.release()
        else:
            await message.ack()

    inbox = Inbox(release_first)
    await broker.consume(t, inbox)
    sent = event(1)
    await broker.publish(BROKER, [sent])
    first, second = await inbox.take(2)
    assert first.event.id == second.event.id == sent.id
    assert first.attempt == second.attempt == 0


async def test_a_failing_handler_gets_the_message_again(open_broker: OpenBroker) -> None:
    t = trigger("crashy")
    broker = await open_broker(mesh(t))
    calls: list[int] = []

    async def crash_once(message: Message) -> None:
        calls.append(message.attempt)
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        await message.ack()

    inbox = Inbox(crash_once)
    await broker.consume(t, inbox)
    await broker.publish(BROKER, [event(1)])
    await inbox.next()
    assert calls == [0, 0]


async def test_settling_twice_raises(open_broker: OpenBroker) -> None:
    t = trigger("twice")
    broker = await open_broker(mesh(t))
    errors: list[str] = []

    async def settle_twice(message: Message) -> None:
        await message.ack()
        for again in (
            message.ack(),
            message.retry(0),
            message.dead_letter(message.event),
            message.release(),
        ):
            try:
                await again
            except BrokerError as exc:
                errors.append(type(exc).__name__)

    inbox = Inbox(settle_twice)
    await broker.consume(t, inbox)
    await broker.publish(BROKER, [event(1)])
    await inbox.next()
    assert errors == ["BrokerError"] * 4
    await inbox.nothing_more(0.3)


class Overlap:
    """A handler that holds each message for `hold()` seconds and counts how many it held at
    once."""

    def __init__(self, hold: Callable[[], float]) -> None:
        self.hold = hold
        self.active = 0
        self.most = 0

    async def __call__(self, message: Message) -> None:
        self.active += 1
        self.most = max(self.most, self.active)
        await asyncio.sleep(self.hold())
        self.active -= 1
        await message.ack()


async def test_parallelism_one_is_strict_fifo(open_broker: OpenBroker) -> None:
    t = trigger("fifo", parallelism=1)
    broker = await open_broker(mesh(t))
    overlap = Overlap(lambda: random.uniform(0, 0.01))
    inbox = Inbox(overlap)
    await broker.consume(t, inbox)
    sent = [event(i) for i in range(40)]
    await broker.publish(BROKER, sent[:20])
    for one in sent[20:]:
        await broker.publish(BROKER, [one])
    received = await inbox.take(len(sent))
    assert [m.event.id for m in received] == [e.id for e in sent]
    assert overlap.most == 1


async def test_parallelism_n_runs_n_at_once(open_broker: OpenBroker) -> None:
    t = trigger("wide", parallelism=4)
    broker = await open_broker(mesh(t))
    overlap = Overlap(lambda: 0.2)
    inbox = Inbox(overlap)
    await broker.consume(t, inbox)
    await broker.publish(BROKER, [event(i) for i in range(12)])
    await inbox.take(12)
    assert overlap.most == 4


@pytest.mark.parametrize("parallelism", [1, 3])
async def test_stop_consuming_lets_in_flight_handlers_finish(
    open_broker: OpenBroker, broker_kind: str, parallelism: int, request: pytest.FixtureRequest
) -> None:
    t = trigger("stoppable", parallelism=parallelism)
    broker = await open_broker(mesh(t))
    started, release = asyncio.Event(), asyncio.Event()
    outcomes: list[str] = []

    async def block(message: Message) -> None:
        started.set()
        await release.wait()
        try:
            await message.ack()
            outcomes.append("acked")
        except BrokerError as exc:
            outcomes.append(f"ack failed: {exc}")

    inbox = Inbox(block)
    await broker.consume(t, inbox)
    await broker.publish(BROKER, [event(1)])
    await asyncio.wait_for(started.wait(), 10)
    await broker.stop_consuming()
    await broker.publish(BROKER, [event(2)])
    release.set()
    first = await inbox.next()
    assert first.event.get("seq") == 1
    assert outcomes == ["acked"]
    await inbox.nothing_more(0.5)


async def test_brokers_are_independent(open_broker: OpenBroker) -> None:
    a = trigger("on-a", broker="a")
    b = trigger("on-b", broker="b")
    broker: Broker = await open_broker(mesh(a, b, brokers=("a", "b", "default")))
    inbox_a, inbox_b = Inbox(), Inbox()
    await broker.consume(a, inbox_a)
    await broker.consume(b, inbox_b)
    sent = event(1)
    await broker.publish("default/a", [sent])
    assert (await inbox_a.next()).event.id == sent.id
    await inbox_b.nothing_more(0.3)


async def test_replies_reach_the_listening_replica_only(open_broker: OpenBroker) -> None:
    broker = await open_broker(mesh(trigger("t")))
    got: dict[str, list[Event]] = {"r1": [], "r2": []}
    arrived = asyncio.Event()

    def listener(replica: str) -> Callable[[Event], None]:
        def deliver(reply: Event) -> None:
            got[replica].append(reply)
            arrived.set()

        return deliver

    await broker.listen_replies("r1", listener("r1"))
    await broker.listen_replies("r2", listener("r2"))
    reply = event(1, "com.example.reply", replyid="r1:token", count=3)
    await broker.send_reply("r1", reply)
    await broker.send_reply("gone", event(2))  # nobody listens: not an error
    await asyncio.wait_for(arrived.wait(), 10)
    await asyncio.sleep(0.2)
    assert [typed(e) for e in got["r1"]] == [typed(reply)]
    assert got["r1"][0].data == reply.data
    assert got["r2"] == []
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await broker.send_reply("r1", reply)


async def test_a_released_message_keeps_its_place_in_a_fifo_trigger(
    open_broker: OpenBroker, broker_kind: str, request: pytest.FixtureRequest
) -> None:
    t = trigger("fifo-release", parallelism=1)
    broker = await open_broker(mesh(t))
    crashed = False

    async def crash_on_second(message: Message) -> None:
        nonlocal crashed
        if message.event.get("seq") == 1 and not crashed:
            crashed = True
            raise RuntimeError("handler bug")
        await message.ack()

    inbox = Inbox(crash_on_second)
    await broker.consume(t, inbox)
    sent = [event(i) for i in range(5)]
    await broker.publish(BROKER, sent)
    received = await inbox.take(len(sent))
    assert [m.event.id for m in received] == [e.id for e in sent]
