"""The State contract: what the ledger (dedup, event log, delivery marks) relies on, on every
State implementation: memory, and Redis on 127.0.0.1 (marker `connected`).

Each Redis test gets a unique key prefix and deletes its keys afterwards. The second half runs
the Ledger (the policies above the port) on both, since that is what users see.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Final

import pytest

from brokers.base import Message
from brokers.delivery import Destination
from brokers.errors import BrokerUnavailable
from brokers.event import Event
from brokers.filters import compile_filters
from brokers.memory import MemoryBroker
from brokers.state import (
    DEDUP_ANNOTATION,
    REPLAY_EXTENSION,
    TARGET_EXTENSION,
    Ledger,
    MemoryState,
    State,
    duplicate_headers,
)
from brokers.state.base import LogEntry, event_key, id_at
from brokers.triggers import BrokerSpec, MeshConfig, TriggerSpec
from tests.contract.conftest import typed, typed_events

REDIS_URL: Final = os.environ.get("CEMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BROKER: Final = "default/default"
MakeState = Callable[[], Awaitable[State]]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.connected)])
async def make_state(request: pytest.FixtureRequest) -> AsyncIterator[MakeState]:
    """A factory of opened states of the parametrized kind, each with its own prefix."""
    made: list[State] = []

    async def make() -> State:
        prefix = f"cemesh-test-{uuid.uuid4().hex[:12]}"
        state: State
        if request.param == "memory":
            state = MemoryState(prefix)
        else:
            from brokers.state.redis import RedisState

            state = RedisState(REDIS_URL, prefix)
        await state.open()
        made.append(state)
        return state

    yield make
    for state in made:
        await state.close()
    if request.param == "redis":
        await _delete_prefixes([s.prefix for s in made])


async def _delete_prefixes(prefixes: Sequence[str]) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        for prefix in prefixes:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def state(make_state: MakeState) -> State:
    return await make_state()


def event(
    n: int, type_: str = "com.example.test", source: str = "/contract", **extra: object
) -> Event:
    attributes: dict[str, object] = {
        "specversion": "1.0",
        "id": f"e-{n}",
        "source": source,
        "type": type_,
        **extra,
    }
    return Event.create(attributes, f'{{"n":{n}}}'.encode())


def _dedup_key(e: Event) -> str:
    return event_key(e.source, e.id)


# marks


async def test_claim_is_set_if_absent(state: State) -> None:
    assert await state.claim("dedup", BROKER, ["a", "b"], 60) == [True, True]
    assert await state.claim("dedup", BROKER, ["a", "c", "c"], 60) == [False, True, False]
    assert await state.exists("dedup", BROKER, "a")
    assert not await state.exists("dedup", BROKER, "zzz")
    assert await state.claim("dedup", BROKER, [], 60) == []


async def test_marks_are_scoped_by_kind_owner_and_namespace(state: State) -> None:
    assert await state.claim("dedup", "default/one", ["k"], 60) == [True]
    assert await state.claim("dedup", "default/two", ["k"], 60) == [True]
    assert await state.claim("dedup", "team-a/one", ["k"], 60) == [True]
    assert await state.claim("delivered", "default/one", ["k"], 60) == [True]
    assert await state.claim("dedup", "default/one", ["k"], 60) == [False]


async def test_states_with_different_prefixes_do_not_collide(make_state: MakeState) -> None:
    first, second = await make_state(), await make_state()
    assert first.prefix != second.prefix
    assert await first.claim("dedup", BROKER, ["k"], 60) == [True]
    assert await second.claim("dedup", BROKER, ["k"], 60) == [True]
    await first.append(BROKER, [event(1)], 100)
    assert await second.tail(BROKER, 10) == []


async def test_marks_expire(state: State) -> None:
    assert await state.claim("dedup", BROKER, ["short"], 0.2) == [True]
    await state.mark("delivered", BROKER, "marked", 0.2)
    assert await state.claim("dedup", BROKER, ["short"], 0.2) == [False]
    assert await state.exists("delivered", BROKER, "marked")
    await asyncio.sleep(0.35)
    assert not await state.exists("delivered", BROKER, "marked")
    assert await state.claim("dedup", BROKER, ["short"], 0.2) == [True]


async def test_mark_and_release(state: State) -> None:
    await state.mark("delivered", BROKER, "k", 60)
    await state.mark("delivered", BROKER, "k", 60)  # marking twice is fine
    assert await state.exists("delivered", BROKER, "k")
    await state.release("delivered", BROKER, ["k", "absent"])
    assert not await state.exists("delivered", BROKER, "k")
    await state.release("delivered", BROKER, [])
    assert await state.claim("delivered", BROKER, ["k"], 60) == [True]


# event log


async def test_log_round_trip_keeps_typed_attributes_and_data(state: State) -> None:
    sent = typed_events()
    ids = await state.append(BROKER, sent, 100)
    assert len(ids) == len(sent)
    got = await state.read(BROKER)
    assert [entry.id for entry in got] == ids
    for original, entry in zip(sent, got, strict=True):
        assert typed(entry.event) == typed(original)
        assert entry.event.data == original.data


async def test_log_ids_are_increasing_stream_ids(state: State) -> None:
    ids = await state.append(BROKER, [event(n) for n in range(50)], 1000)
    ids += await state.append(BROKER, [event(50)], 1000)
    assert all(re.fullmatch(r"\d+-\d+", i) for i in ids)
    pairs = [tuple(map(int, i.split("-"))) for i in ids]
    assert pairs == sorted(set(pairs))
    millis = pairs[0][0]
    assert abs(millis / 1000 - datetime.now(UTC).timestamp()) < 60


async def test_read_bounds_follow_redis(state: State) -> None:
    ids = await state.append(BROKER, [event(n) for n in range(10)], 1000)

    async def read(start: str = "-", end: str = "+", count: int = 100) -> list[str]:
        return [entry.id for entry in await state.read(BROKER, start, end, count)]

    assert await read() == ids
    assert await read(ids[3]) == ids[3:]
    assert await read("(" + ids[3]) == ids[4:]
    assert await read(end=ids[5]) == ids[:6]
    assert await read(end="(" + ids[5]) == ids[:5]
    assert await read(ids[2], ids[4]) == ids[2:5]
    assert await read(count=3) == ids[:3]
    assert await read("(" + ids[-1]) == []
    assert await read(count=0) == []
    with pytest.raises(ValueError, match="stream id"):
        await state.read(BROKER, "yesterday")


async def test_read_by_time(state: State) -> None:
    before = await state.append(BROKER, [event(1), event(2)], 100)
    await asyncio.sleep(0.02)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.02)
    after = await state.append(BROKER, [event(3)], 100)
    assert [e.id for e in await state.read(BROKER, id_at(middle))] == after
    assert [e.id for e in await state.read(BROKER, "-", id_at(middle, end=True))] == before
    (entry,) = await state.read(BROKER, after[0])
    assert isinstance(entry, LogEntry)
    assert entry.time.endswith("Z")
    assert datetime.fromisoformat(entry.time) >= middle.replace(microsecond=0)


async def test_tail_returns_the_newest_oldest_first(state: State) -> None:
    ids = await state.append(BROKER, [event(n) for n in range(8)], 100)
    assert [e.id for e in await state.tail(BROKER, 3)] == ids[-3:]
    assert [e.id for e in await state.tail(BROKER, 100)] == ids
    assert await state.tail(BROKER, 0) == []
    assert await state.tail("default/other", 5) == []


async def test_log_is_capped_to_about_maxlen(state: State) -> None:
    ids: list[str] = []
    for chunk in range(6):
        ids += await state.append(BROKER, [event(chunk * 50 + n) for n in range(50)], 10)
    kept = [e.id for e in await state.tail(BROKER, 1000)]
    # Redis trims whole stream nodes (MAXLEN ~): at least maxlen, at most a node more.
    assert 10 <= len(kept) <= 10 + 100
    assert kept == ids[-len(kept) :]


async def test_logs_are_per_broker(state: State) -> None:
    await state.append("default/one", [event(1)], 100)
    await state.append("team-a/one", [event(2)], 100)
    assert [e.event.id for e in await state.read("default/one")] == ["e-1"]
    assert [e.event.id for e in await state.read("team-a/one")] == ["e-2"]


# the ledger on each state


def trigger(name: str, *, broker: str = "default", **exact: str) -> TriggerSpec:
    filters = [{"exact": {k: v}} for k, v in exact.items()]
    return TriggerSpec(
        "default", name, broker, Destination(uri="http://127.0.0.1:9/"), compile_filters(filters)
    )


def config(*triggers: TriggerSpec, window: str | None = None) -> MeshConfig:
    annotations = {DEDUP_ANNOTATION: window} if window is not None else {}
    brokers = {BROKER: BrokerSpec("default", "default", annotations=annotations)}
    return MeshConfig(brokers, list(triggers))


class Collected:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)
        await message.ack()


async def opened(cfg: MeshConfig) -> tuple[MemoryBroker, dict[str, Collected]]:
    broker = MemoryBroker()
    await broker.open(cfg)
    inboxes = {t.name: Collected() for t in cfg.triggers}
    for t in cfg.triggers:
        await broker.consume(t, inboxes[t.name])
    return broker, inboxes


async def settle() -> None:
    await asyncio.sleep(0.05)


async def test_ledger_publishes_a_repeated_event_once(state: State) -> None:
    cfg = config(trigger("all"))
    broker, inboxes = await opened(cfg)
    ledger = Ledger(state, cfg)
    first = await ledger.publish(broker, BROKER, [event(1)])
    again = await ledger.publish(broker, BROKER, [event(1)])
    other_source = await ledger.publish(broker, BROKER, [event(1, source="/elsewhere")])
    await settle()
    assert (len(first.published), len(first.duplicates)) == (1, 0)
    assert (len(again.published), len(again.duplicates)) == (0, 1)
    assert len(other_source.published) == 1
    assert duplicate_headers(first) == []
    assert dict(duplicate_headers(again)) == {
        b"cemesh-duplicate": b"true",
        b"cemesh-duplicate-count": b"1",
        b"cemesh-duplicate-ids": b"e-1",
    }
    assert len(inboxes["all"].messages) == 2
    assert [e.event.id for e in await state.read(BROKER)] == ["e-1", "e-1"]
    assert ledger.stats.duplicates == 1
    await broker.close()


async def test_ledger_batch_reports_which_were_duplicates(state: State) -> None:
    cfg = config(trigger("all"))
    broker, inboxes = await opened(cfg)
    ledger = Ledger(state, cfg)
    await ledger.publish(broker, BROKER, [event(1)])
    odd = Event.create({"specversion": "1.0", "id": "a,b c", "source": "/contract", "type": "t"})
    admission = await ledger.publish(broker, BROKER, [event(1), event(2), event(2), odd, odd])
    assert [e.id for e in admission.published] == ["e-2", "a,b c"]
    assert dict(duplicate_headers(admission)) == {
        b"cemesh-duplicate": b"partial",
        b"cemesh-duplicate-count": b"3",
        b"cemesh-duplicate-ids": b"e-1,e-2,a%2Cb%20c",
    }
    await settle()
    assert len(inboxes["all"].messages) == 3
    await broker.close()


async def test_ledger_duplicate_ids_header_is_bounded(state: State) -> None:
    cfg = config(trigger("all"))
    broker, _ = await opened(cfg)
    ledger = Ledger(state, cfg)
    many = [event(n, source="/" + "s" * 50) for n in range(1000)]
    await ledger.publish(broker, BROKER, many)
    headers = dict(duplicate_headers(await ledger.publish(broker, BROKER, many)))
    assert headers[b"cemesh-duplicate-count"] == b"1000"
    assert 3500 < len(headers[b"cemesh-duplicate-ids"]) <= 4096
    assert headers[b"cemesh-duplicate-ids"].startswith(b"e-0,e-1,")
    await broker.close()


async def test_ledger_window_zero_disables_dedup(state: State) -> None:
    cfg = config(trigger("all"), window="0")
    broker, inboxes = await opened(cfg)
    ledger = Ledger(state, cfg)
    for _ in range(3):
        assert len((await ledger.publish(broker, BROKER, [event(1)])).published) == 1
    await settle()
    assert len(inboxes["all"].messages) == 3
    await broker.close()


async def test_ledger_window_expires(state: State) -> None:
    cfg = config(trigger("all"), window="PT0.2S")
    broker, _ = await opened(cfg)
    ledger = Ledger(state, cfg)
    assert not await ledger.seen(BROKER, "/s", "x", 0.2)
    assert await ledger.seen(BROKER, "/s", "x", 0.2)
    await ledger.publish(broker, BROKER, [event(1)])
    assert (await ledger.publish(broker, BROKER, [event(1)])).duplicates
    await asyncio.sleep(0.3)
    assert (await ledger.publish(broker, BROKER, [event(1)])).published
    await broker.close()


async def test_ledger_forgets_claims_when_the_broker_refuses(state: State) -> None:
    cfg = config(trigger("all"))
    broker, _ = await opened(cfg)
    ledger = Ledger(state, cfg)
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await ledger.publish(broker, BROKER, [event(1)])
    assert await state.tail(BROKER, 10) == []
    broker, _inboxes = await opened(cfg)
    retried = await ledger.publish(broker, BROKER, [event(1)])
    assert retried.published
    assert not retried.duplicates
    await broker.close()


async def test_present_reports_each_key(state: State) -> None:
    assert await state.present("dedup", BROKER, []) == []
    await state.claim("dedup", BROKER, ["a", "c"], 10)
    assert await state.present("dedup", BROKER, ["a", "b", "c"]) == [True, False, True]


class GatedBroker(MemoryBroker):
    """A memory broker whose publish waits until the test opens the gate (a slow confirm)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def publish(self, broker: str, events: Sequence[Event]) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().publish(broker, events)


async def test_ledger_claims_only_after_the_broker_confirmed(state: State) -> None:
    """Issue 12 item 1: while a publish is unconfirmed (or its process died), a retry of the
    same event is published, never answered as a duplicate."""
    cfg = config(trigger("all"))
    slow = GatedBroker()
    await slow.open(cfg)
    ledger = Ledger(state, cfg)
    first = asyncio.create_task(ledger.publish(slow, BROKER, [event(1)]))
    await slow.entered.wait()
    assert await state.present("dedup", BROKER, [_dedup_key(event(1))]) == [False]
    broker, inboxes = await opened(cfg)
    retried = await ledger.publish(broker, BROKER, [event(1)])
    assert [e.id for e in retried.published] == ["e-1"]
    assert not retried.duplicates
    first.cancel()  # the first publish never confirms: as if its process was killed
    with pytest.raises(asyncio.CancelledError):
        await first
    again = await ledger.publish(broker, BROKER, [event(1)])
    assert [e.id for e in again.duplicates] == ["e-1"]
    await settle()
    assert len(inboxes["all"].messages) == 1
    await broker.close()
    await slow.close()


class Delivery:
    """A message as the dispatcher sees one (the memory broker's shape)."""

    def __init__(self, e: Event, *, redelivered: bool | None = None) -> None:
        self.event = e
        self.attempt = 0
        self.matched = True
        if redelivered is not None:
            self.redelivered = redelivered

    async def ack(self) -> None: ...
    async def retry(self, delay: float, event: Event | None = None) -> None: ...
    async def dead_letter(self, event: Event) -> None: ...
    async def release(self) -> None: ...


async def test_ledger_skips_what_a_trigger_already_delivered(state: State) -> None:
    orders, audit = trigger("orders"), trigger("audit")
    ledger = Ledger(state, config(orders, audit))
    sent = event(1)
    assert await ledger.before_delivery(orders, Delivery(sent)) == sent
    await ledger.delivered(orders, sent)
    assert await ledger.before_delivery(orders, Delivery(sent)) is None
    assert await ledger.before_delivery(audit, Delivery(sent)) == sent
    # a message the broker says was never delivered before is not looked up
    assert await ledger.before_delivery(orders, Delivery(sent, redelivered=False)) == sent
    # a replayed copy is a new delivery, once
    replayed = sent.replace(**{REPLAY_EXTENSION: "r-1"})
    assert await ledger.before_delivery(orders, Delivery(replayed)) == replayed
    await ledger.delivered(orders, replayed)
    assert await ledger.before_delivery(orders, Delivery(replayed)) is None
    assert ledger.stats.delivery_skipped == 2


async def test_ledger_targets_one_trigger(state: State) -> None:
    orders, audit = trigger("orders"), trigger("audit")
    ledger = Ledger(state, config(orders, audit))
    targeted = event(1).replace(**{TARGET_EXTENSION: "default/orders", REPLAY_EXTENSION: "r-9"})
    delivered = await ledger.before_delivery(orders, Delivery(targeted))
    assert delivered is not None
    assert TARGET_EXTENSION not in delivered.attributes
    assert delivered.get(REPLAY_EXTENSION) == "r-9"
    assert await ledger.before_delivery(audit, Delivery(targeted)) is None
    assert ledger.stats.off_target == 1


async def test_ledger_delivery_dedup_off_with_window_zero(state: State) -> None:
    orders = trigger("orders")
    ledger = Ledger(state, config(orders, window="0"))
    await ledger.delivered(orders, event(1))
    assert await ledger.before_delivery(orders, Delivery(event(1))) == event(1)


async def test_counters_count_within_their_window(state: State) -> None:
    assert [await state.count("rate", "t", "w1", 0.3) for _ in range(3)] == [1, 2, 3]
    assert await state.count("rate", "t", "w2", 0.3) == 1
    await asyncio.sleep(0.45)
    assert await state.count("rate", "t", "w1", 0.3) == 1
