"""Issue 12 item 7: backpressure instead of unbounded memory.

The memory broker bounds each trigger's queue by count and bytes and refuses a publish whole
(BrokerUnavailable: 503 with Retry-After at the ingress); the memory state's event log is capped
by bytes as well as by count."""

from __future__ import annotations

import pytest

from brokers.delivery import Destination
from brokers.errors import BrokerUnavailable
from brokers.event import Event
from brokers.filters import compile_filters
from brokers.memory import MemoryBroker
from brokers.state import MemoryState
from brokers.triggers import BrokerSpec, MeshConfig, TriggerSpec

BROKER = "default/default"


def event(n: int, size: int = 10) -> Event:
    attributes = {"specversion": "1.0", "id": f"e-{n}", "source": "/bp", "type": "t"}
    return Event.create(attributes, b"x" * size)


def config() -> MeshConfig:
    slow = TriggerSpec(
        "default", "slow", "default", Destination(uri="http://127.0.0.1:9/"), compile_filters([])
    )
    return MeshConfig({BROKER: BrokerSpec("default", "default")}, [slow])


async def test_a_full_queue_refuses_the_publish_whole() -> None:
    broker = MemoryBroker(max_queue_length=5)
    await broker.open(config())
    await broker.publish(BROKER, [event(n) for n in range(4)])
    with pytest.raises(BrokerUnavailable, match="default/slow is full") as caught:
        await broker.publish(BROKER, [event(n) for n in range(4, 7)])
    assert caught.value.retry_after >= 1
    await broker.publish(BROKER, [event(4)])  # the refused batch queued nothing
    with pytest.raises(BrokerUnavailable):
        await broker.publish(BROKER, [event(5)])
    await broker.close()


async def test_queues_are_bounded_by_bytes() -> None:
    broker = MemoryBroker(max_queue_bytes=10_000)
    await broker.open(config())
    await broker.publish(BROKER, [event(1, 6_000)])
    with pytest.raises(BrokerUnavailable):
        await broker.publish(BROKER, [event(2, 6_000)])
    await broker.close()


async def test_the_memory_event_log_is_capped_by_bytes() -> None:
    state = MemoryState(max_log_bytes=10_000)
    for n in range(100):
        await state.append(BROKER, [event(n, 900)], maxlen=1_000)
    kept = await state.tail(BROKER, 1_000)
    assert 9 <= len(kept) <= 11
    assert kept[-1].event.id == "e-99"
    await state.append(BROKER, [event(100, 100)], maxlen=3)
    assert [e.event.id for e in await state.tail(BROKER, 10)] == ["e-98", "e-99", "e-100"]
