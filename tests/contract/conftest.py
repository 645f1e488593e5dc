"""One broker contract, every Broker implementation: the fixtures and small builders.

`open_broker` is parametrized over the memory broker and the RabbitMQ broker (marker
`connected`, real server from `CEMESH_TEST_AMQP_URL`); each RabbitMQ broker gets a unique name
prefix and everything it declared is deleted afterwards. The builders are plain functions so the
RabbitMQ integration tests can import them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import pytest

from brokers.base import Broker, Message
from brokers.delivery import Destination
from brokers.event import Event
from brokers.filters import compile_filters
from brokers.memory import MemoryBroker
from brokers.triggers import BrokerSpec, MeshConfig, TriggerSpec

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_AMQP_URL: Final = "amqp://guest:guest@127.0.0.1:5672/"
BROKER: Final = "default/default"
OpenBroker = Callable[[MeshConfig], Awaitable[Broker]]
Action = Callable[[Message], Awaitable[None]]


def amqp_url() -> str:
    return os.environ.get("CEMESH_TEST_AMQP_URL", DEFAULT_AMQP_URL)


def unique_prefix() -> str:
    return f"cemesh-test-{uuid.uuid4().hex[:12]}"


def trigger(
    name: str,
    exact: Mapping[str, str] | None = None,
    *,
    parallelism: int = 100,
    broker: str = "default",
    namespace: str = "default",
) -> TriggerSpec:
    """A trigger on `broker` with exact filters only (what both brokers evaluate alike)."""
    filters = [{"exact": {k: v}} for k, v in (exact or {}).items()]
    return TriggerSpec(
        namespace,
        name,
        broker,
        Destination(uri="http://127.0.0.1:9/sink"),
        compile_filters(filters),
        parallelism=parallelism,
    )


def mesh(*triggers: TriggerSpec, brokers: tuple[str, ...] = ("default",)) -> MeshConfig:
    specs = {f"default/{b}": BrokerSpec("default", b) for b in brokers}
    return MeshConfig(specs, list(triggers))


def event(index: int, type_: str = "com.example.test", **extra: Any) -> Event:
    """A valid event with a unique id; `extra` adds attributes (int/bool extensions too)."""
    attributes: dict[str, object] = {
        "specversion": "1.0",
        "id": f"e-{index}-{uuid.uuid4().hex[:6]}",
        "source": "/contract",
        "type": type_,
        "seq": index,
    }
    attributes.update(extra)
    return Event.create(attributes, f'{{"n":{index}}}'.encode())


def typed(e: Event) -> dict[str, tuple[type, object]]:
    """Attributes with their Python types (True == 1, so plain equality is not enough)."""
    return {name: (type(value), value) for name, value in e.attributes.items()}


def typed_events() -> list[Event]:
    """Events a broker and an event log must give back exactly: attributes of every type
    (integers at the 32-bit bound, booleans, text that needs escaping, a time with an
    offset), binary data, no data, empty data, JSON data and JSON `null`."""
    base = {"specversion": "1.0", "source": "/contract", "type": "com.example.typed"}
    every_type = {
        **base,
        "id": "bin",
        "datacontenttype": "application/octet-stream",
        "count": 7,
        "big": -(2**31),
        "flag": True,
        "off": False,
        "text": 'héllo "wörld" %20 ☃',
        "subject": "s/1",
        "time": "2026-11-22T10:00:00.5+01:00",
        "digits": "42",
    }
    return [
        Event.create(every_type, bytes(range(256))),
        Event.create({**base, "id": "nodata"}),
        Event.create({**base, "id": "empty", "datacontenttype": "text/plain"}, b""),
        Event.create({**base, "id": "json", "datacontenttype": "application/json"}, b'{"a":1}'),
        Event.create({**base, "id": "null", "datacontenttype": "application/json"}, b"null"),
    ]


async def ack(message: Message) -> None:
    await message.ack()


class Inbox:
    """A handler that runs `action` on each message and then records it."""

    def __init__(self, action: Action = ack) -> None:
        self.action = action
        self.received: asyncio.Queue[Message] = asyncio.Queue()
        self.all: list[Message] = []

    async def __call__(self, message: Message) -> None:
        await self.action(message)
        self.all.append(message)
        self.received.put_nowait(message)

    async def next(self, timeout: float = 10.0) -> Message:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def take(self, count: int, timeout: float = 10.0) -> list[Message]:
        return [await self.next(timeout) for _ in range(count)]

    async def nothing_more(self, seconds: float = 0.5) -> None:
        await asyncio.sleep(seconds)
        assert self.received.empty(), f"unexpected: {self.received.get_nowait().event.id}"


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.connected)])
def broker_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def open_broker(broker_kind: str) -> AsyncIterator[OpenBroker]:
    """A factory opening a broker of the parametrized kind on a config; closes (and for
    RabbitMQ deletes) everything at the end."""
    opened: list[Broker] = []

    async def make(config: MeshConfig) -> Broker:
        broker: Broker
        if broker_kind == "memory":
            broker = MemoryBroker()
        else:
            from brokers.rabbitmq.broker import RabbitBroker

            broker = RabbitBroker(amqp_url(), prefix=unique_prefix(), publish_timeout=3.0)
        await broker.open(config)
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        await broker.close()
        delete = getattr(broker, "delete_everything", None)
        if delete is not None:
            await delete()


class Fleet:
    """RabbitMQ brokers (replicas) for integration tests, closed and deleted at the end."""

    def __init__(self) -> None:
        self.brokers: list[Any] = []

    async def new(
        self,
        config: MeshConfig,
        prefix: str | None = None,
        url: str | None = None,
        **options: Any,
    ) -> Any:
        from brokers.rabbitmq.broker import RabbitBroker

        options.setdefault("publish_timeout", 3.0)
        broker = RabbitBroker(url or amqp_url(), prefix=prefix or unique_prefix(), **options)
        self.brokers.append(broker)
        await broker.open(config)
        return broker

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        from brokers.rabbitmq.broker import RabbitBroker

        for broker in self.brokers:
            with contextlib.suppress(Exception):  # a failed test must still clean up
                await broker.close()
        for prefix in {broker.names.prefix for broker in self.brokers}:
            # a fresh broker on the direct URL: the test's own may point at a closed proxy
            await RabbitBroker(amqp_url(), prefix=prefix).delete_everything()


async def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    """Run rabbitmqctl (the machine's RabbitMQ CLI) and return its output."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    if process.returncode:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


async def kill_connections(name_part: str) -> int:
    """Close (as `close_all_connections` would) the connections whose client-provided name
    contains `name_part`, leaving other users of the shared RabbitMQ alone."""
    listing = await rabbitmqctl(
        "--no-table-headers", "list_connections", "pid", "client_properties"
    )
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if '{"connection_name","' in line and name_part in line
    ]
    for pid in pids:
        await rabbitmqctl("close_connection", pid, "test")
    return len(pids)


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until `condition()` holds (polling), or fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)
