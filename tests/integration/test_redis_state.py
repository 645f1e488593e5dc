"""RedisState and the ledger against the real Redis on 127.0.0.1 (marker `connected`): the key
layout users and operators see, expiry, stream capping, and what happens when Redis goes away
and comes back (through a TCP proxy the test can stop, and a port that accepts but never
answers). The URL-parsing tests need no server."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Final

import pytest
from redis.asyncio import Redis

from brokers.delivery import Destination
from brokers.event import Event
from brokers.filters import compile_filters
from brokers.memory import MemoryBroker
from brokers.state import (
    LOG_ANNOTATION,
    Ledger,
    MemoryState,
    StateUnavailable,
    function_env,
    make_state,
    state_options,
)
from brokers.state.base import event_key
from brokers.state.redis import RedisState
from brokers.triggers import BrokerSpec, MeshConfig, TriggerSpec
from tests.conftest import free_port

REDIS: Final = ("127.0.0.1", 6379)
REDIS_URL: Final = "redis://127.0.0.1:6379/0"
BROKER: Final = "default/default"


def unique() -> str:
    return f"cemesh-test-{uuid.uuid4().hex[:12]}"


def event(n: int) -> Event:
    return Event.create(
        {"specversion": "1.0", "id": f"e-{n}", "source": "/it", "type": "com.example.it"}, b"{}"
    )


def config(**annotations: str) -> MeshConfig:
    trigger = TriggerSpec(
        "default", "all", "default", Destination(uri="http://127.0.0.1:9/"), compile_filters([])
    )
    return MeshConfig(
        {BROKER: BrokerSpec("default", "default", annotations=annotations)}, [trigger]
    )


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    name = unique()
    yield name
    keys = [k async for k in redis.scan_iter(match=f"{name}:*", count=1000)]
    if keys:
        await redis.delete(*keys)


# URLs (no server)


def test_state_url_options() -> None:
    options = state_options("redis://:pw@10.0.0.1:6380/2?prefix=mesh1&log_maxlen=50&timeout=0.2")
    assert (options.backend, options.prefix, options.log_length, options.timeout) == (
        "redis",
        "mesh1",
        50,
        0.2,
    )
    assert options.url == "redis://:pw@10.0.0.1:6380/2"
    assert state_options("redis://h/0?prefix=p&health_check_interval=5").url == (
        "redis://h/0?health_check_interval=5"
    )
    assert state_options("memory://").backend == "memory"
    assert isinstance(make_state("memory://?prefix=x"), MemoryState)
    for bad in ("postgres://x", "redis://h/0?log_maxlen=lots", "redis://h/0?timeout=0"):
        with pytest.raises(ValueError, match="state URL"):
            state_options(bad)


def test_function_env() -> None:
    assert function_env("redis://h:1/0?prefix=m1", "team-a", "deployments") == {
        "REDIS_URL": "redis://h:1/0",
        "CEMESH_STATE_PREFIX": "m1:team-a:fn:deployments",
    }
    assert function_env("memory://", "default", "f")["REDIS_URL"] == ""


# the real Redis


@pytest.mark.connected
async def test_key_layout_and_expiry(redis: Redis, prefix: str) -> None:
    state = RedisState(REDIS_URL, prefix)
    cfg = config(**{"cemesh.dev/dedup-window": "PT90S", LOG_ANNOTATION: "1000"})
    ledger = Ledger(state, cfg)
    broker = MemoryBroker()
    await broker.open(cfg)
    await ledger.publish(broker, BROKER, [event(1), event(2)])
    await ledger.delivered(cfg.triggers[0], event(1))
    dedup = f"{prefix}:default:dedup:default:{event_key('/it', 'e-1')}"
    delivered = f"{prefix}:default:delivered:all:{event_key('/it', 'e-1', '')}"
    assert await redis.exists(dedup, delivered) == 2
    assert 85_000 < await redis.pttl(dedup) <= 90_000
    assert 85_000 < await redis.pttl(delivered) <= 90_000
    stream = f"{prefix}:default:log:default"
    assert await redis.type(stream) == b"stream"
    assert await redis.xlen(stream) == 2
    await broker.close()
    await state.close()


@pytest.mark.connected
async def test_stream_is_capped_per_broker_annotation(redis: Redis, prefix: str) -> None:
    state = RedisState(REDIS_URL, prefix)
    cfg = config(**{LOG_ANNOTATION: "100", "cemesh.dev/dedup-window": "0"})
    ledger = Ledger(state, cfg)
    broker = MemoryBroker()
    await broker.open(cfg)
    for chunk in range(20):
        await ledger.publish(broker, BROKER, [event(chunk * 50 + n) for n in range(50)])
    length = await redis.xlen(f"{prefix}:default:log:default")
    assert 100 <= length <= 200, length
    await broker.close()
    await state.close()


class Proxy:
    """A TCP proxy in front of Redis that the test can stop and start on the same port."""

    def __init__(self, upstream: tuple[str, int], *, mute: bool = False) -> None:
        self.upstream = upstream
        self.mute = mute  # accept connections but never answer
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mute:
            with contextlib.suppress(Exception):
                await reader.read()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for coro in (pipe(reader, up_writer), pipe(up_reader, writer)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@pytest.mark.connected
async def test_redis_outage_fails_open_and_recovers_by_itself(prefix: str) -> None:
    proxy = Proxy(REDIS)
    await proxy.start()
    state = RedisState(proxy.url, prefix, timeout=0.5, cooldown=0.3)
    cfg = config()
    ledger = Ledger(state, cfg)
    broker = MemoryBroker()
    await broker.open(cfg)
    assert (await ledger.publish(broker, BROKER, [event(1)])).published
    assert (await ledger.publish(broker, BROKER, [event(1)])).duplicates

    await proxy.stop()
    started = time.monotonic()
    down = await ledger.publish(broker, BROKER, [event(1), event(2)])
    assert [e.id for e in down.published] == ["e-1", "e-2"]  # fail open: nothing dropped
    assert time.monotonic() - started < 2.0
    assert not state.healthy
    fast = time.monotonic()
    with pytest.raises(StateUnavailable):  # cooling down: fails fast, no network
        await state.tail(BROKER, 1)
    assert time.monotonic() - fast < 0.05
    assert ledger.stats.dedup_unavailable >= 1
    assert ledger.stats.log_unavailable >= 1

    await proxy.start()
    await asyncio.sleep(0.4)
    again = await ledger.publish(broker, BROKER, [event(3)])
    assert again.published
    assert state.healthy
    assert (await ledger.publish(broker, BROKER, [event(3)])).duplicates  # dedup is back
    assert [e.event.id for e in await state.tail(BROKER, 10)][-1] == "e-3"
    await broker.close()
    await state.close()
    await proxy.stop()


async def test_a_redis_that_never_answers_costs_a_bounded_wait() -> None:
    silent = Proxy(REDIS, mute=True)
    await silent.start()
    state = RedisState(silent.url, unique(), timeout=0.2, cooldown=5)
    cfg = config()
    ledger = Ledger(state, cfg)
    broker = MemoryBroker()
    await broker.open(cfg)
    started = time.monotonic()
    admission = await ledger.publish(broker, BROKER, [event(1)])
    first = time.monotonic() - started
    assert admission.published
    assert first < 1.5, first
    started = time.monotonic()
    await ledger.publish(broker, BROKER, [event(2)])
    assert time.monotonic() - started < 0.05  # the breaker is open: no second wait
    await broker.close()
    await state.close()
    await silent.stop()


async def test_a_closed_port_fails_fast() -> None:
    state = RedisState(f"redis://127.0.0.1:{free_port()}/0", unique())
    await state.open()  # logs a warning, does not raise
    started = time.monotonic()
    with pytest.raises(StateUnavailable, match="redis"):
        await state.claim("dedup", BROKER, ["k"], 10)
    assert time.monotonic() - started < 1.0
    await state.close()
