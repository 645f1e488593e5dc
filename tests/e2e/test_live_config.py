"""Issue 13 item 5: configuration applied live by `cemesh up`, on memory and on RabbitMQ.

A steady stream of events runs, every 202 recorded with the time its answer arrived, while
triggers are added, changed and removed and an invalid file is written. Every accepted event
must reach every trigger that matched it when it was accepted, none is lost, the invalid change
is refused and the mesh stays ready. "Applied" is read from `cemesh_config_reloads_total`.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp
import pytest

from tests.e2e.harness import MeshProcess, Sink, write

pytestmark = pytest.mark.e2e

AMQP_URL: Final = os.environ.get("CEMESH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BROKERS: Final = pytest.mark.parametrize(
    "broker_url",
    ["memory://", pytest.param(AMQP_URL, marks=pytest.mark.connected)],
    ids=["memory-broker", "rabbitmq"],
)
APPLY_WITHIN: Final = 2.0


def broker_yaml(name: str = "default") -> str:
    return (
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\n"
        f"metadata: {{name: {name}, namespace: default}}\n---\n"
    )


def trigger_yaml(name: str, sink: str, type_: str, broker: str = "default") -> str:
    return (
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        f"spec: {{broker: {broker}, filter: {{attributes: {{type: {type_}}}}}, "
        f"subscriber: {{uri: '{sink}/{name}'}}}}\n---\n"
    )


@dataclass
class Accepted:
    """Every 202: event id, type, and when the answer arrived."""

    at: dict[str, float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def of(self, type_: str, after: float = 0.0, before: float = float("inf")) -> set[str]:
        return {i for i, t in self.types.items() if t == type_ and after < self.at[i] < before}


async def stream(url: str, accepted: Accepted, stop: asyncio.Event) -> None:
    """Alternate types a and b, one event at a time, until stopped; every event is retried
    until it is accepted (a reload must never refuse one)."""
    async with aiohttp.ClientSession() as session:
        n = 0
        while not stop.is_set():
            type_ = "com.example.a" if n % 2 == 0 else "com.example.b"
            event_id = f"live-{n}"
            headers = {
                "ce-specversion": "1.0",
                "ce-id": event_id,
                "ce-source": "/live",
                "ce-type": type_,
            }
            async with session.post(url, headers=headers, data=b"{}") as response:
                await response.read()
                assert response.status == 202, f"{event_id}: {response.status}"
            accepted.at[event_id] = time.monotonic()
            accepted.types[event_id] = type_
            n += 1
            await asyncio.sleep(0.004)


async def reloads(mesh: MeshProcess, result: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(mesh.url + "/metrics") as r:
        text = await r.text()
    match = re.search(rf'cemesh_config_reloads_total{{result="{result}"}} (\d+)', text)
    return int(match.group(1)) if match else 0


async def until_reloaded(mesh: MeshProcess, result: str, count: int) -> float:
    """When the reload count reached `count` (seconds since the epoch of time.monotonic)."""
    started = time.monotonic()
    while await reloads(mesh, result) < count:
        waited = time.monotonic() - started
        assert waited < APPLY_WITHIN, f"no {result} reload #{count} within {APPLY_WITHIN}s"
        await asyncio.sleep(0.02)
    return time.monotonic()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    started = await Sink().start()
    yield started
    await started.stop()


def delivered(sink: Sink, trigger: str) -> set[str]:
    return {r.headers["ce-id"] for r in sink.on(f"/{trigger}")}


async def settle(sink: Sink, trigger: str, expected: set[str], timeout: float = 20.0) -> None:
    await sink.wait_until(lambda: expected <= delivered(sink, trigger), timeout)


@BROKERS
async def test_triggers_change_under_a_steady_stream(
    tmp_path: Path, sink: Sink, broker_url: str
) -> None:
    config = tmp_path / "config"
    main = config / "mesh.yaml"
    base = broker_yaml() + trigger_yaml("keep", sink.url, "com.example.a")
    write(main, base + trigger_yaml("moved", sink.url, "com.example.a"))
    write(config / "gone.yaml", trigger_yaml("gone", sink.url, "com.example.a"))
    prefix = f"live{uuid.uuid4().hex[:10]}"
    mesh = MeshProcess(config, extra=["--broker", broker_url], env={"CEMESH_BROKER_PREFIX": prefix})
    await asyncio.to_thread(mesh.start)
    accepted = Accepted()
    stop = asyncio.Event()
    sending = asyncio.create_task(stream(mesh.url + "/default/default", accepted, stop))
    try:
        await asyncio.sleep(0.5)
        written_add = time.monotonic()
        write(config / "added.yaml", trigger_yaml("added", sink.url, "com.example.b"))
        applied_add = await until_reloaded(mesh, "applied", 1)
        await asyncio.sleep(0.5)

        written_move = time.monotonic()
        write(main, base + trigger_yaml("moved", sink.url, "com.example.b"))
        applied_move = await until_reloaded(mesh, "applied", 2)
        await asyncio.sleep(0.5)

        write(config / "broken.yaml", "kind: [unclosed\n")
        await until_reloaded(mesh, "refused", 1)
        async with aiohttp.ClientSession() as session, session.get(mesh.url + "/readyz") as r:
            assert r.status == 200
        (config / "broken.yaml").unlink()
        await asyncio.sleep(0.5)

        written_remove = time.monotonic()
        (config / "gone.yaml").unlink()
        applied_remove = await until_reloaded(mesh, "applied", 3)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await sending
    a, b = accepted.of("com.example.a"), accepted.of("com.example.b")
    assert len(a) > 20  # a stream, even on a loaded machine
    assert len(b) > 20
    await settle(sink, "keep", a)
    await settle(sink, "added", accepted.of("com.example.b", after=applied_add))
    await settle(sink, "gone", accepted.of("com.example.a", before=written_remove))
    await asyncio.to_thread(mesh.stop)
    output = mesh.output

    assert delivered(sink, "keep") == a  # untouched all along: every event, once or more
    added = delivered(sink, "added")
    assert accepted.of("com.example.b", after=applied_add) <= added
    assert added <= accepted.of("com.example.b", after=written_add)
    moved = delivered(sink, "moved")
    assert accepted.of("com.example.a", before=written_move) <= moved
    assert accepted.of("com.example.b", after=applied_move) <= moved
    assert not moved & accepted.of("com.example.a", after=applied_move)
    assert not moved & accepted.of("com.example.b", before=written_move)
    gone = delivered(sink, "gone")
    assert accepted.of("com.example.a", before=written_remove) <= gone  # drained, not lost
    assert not gone & accepted.of("com.example.a", after=applied_remove)

    assert "+trigger default/added" in output
    assert "~trigger default/moved filter" in output
    assert "-trigger default/gone" in output
    refused = [line for line in output.splitlines() if "configuration refused" in line]
    assert len(refused) == 1, output
    assert "broken.yaml" in refused[0]


async def post(url: str) -> int:
    headers = {"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/s", "ce-type": "t"}
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as r:
        return r.status


async def test_brokers_come_and_go_and_sighup_reloads_in_place(tmp_path: Path, sink: Sink) -> None:
    config = tmp_path / "config"
    write(config / "mesh.yaml", broker_yaml())
    mesh = MeshProcess(config)
    await asyncio.to_thread(mesh.start)
    try:
        assert await post(mesh.url + "/default/orders") == 404
        write(config / "orders.yaml", broker_yaml("orders"))
        await until_reloaded(mesh, "applied", 1)
        assert await post(mesh.url + "/default/orders") == 202
        (config / "orders.yaml").unlink()
        await until_reloaded(mesh, "applied", 2)
        assert await post(mesh.url + "/default/orders") == 404

        assert mesh.proc is not None
        mesh.proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert mesh.proc.poll() is None, "SIGHUP stopped the process"
        assert await post(mesh.url + "/default/default") == 202
    finally:
        await asyncio.to_thread(mesh.stop)
    assert "+broker default/orders" in mesh.output
    assert "-broker default/orders" in mesh.output
    assert "configuration unchanged (SIGHUP)" in mesh.output


async def test_a_trigger_naming_a_missing_broker_is_refused(tmp_path: Path, sink: Sink) -> None:
    config = tmp_path / "config"
    write(config / "mesh.yaml", broker_yaml() + trigger_yaml("keep", sink.url, "t"))
    mesh = MeshProcess(config)
    await asyncio.to_thread(mesh.start)
    try:
        write(config / "bad.yaml", trigger_yaml("lost", sink.url, "t", broker="nowhere"))
        await until_reloaded(mesh, "refused", 1)
        assert await post(mesh.url + "/default/default") == 202
        await sink.wait_for(1, path="/keep")
    finally:
        await asyncio.to_thread(mesh.stop)
    refused = [line for line in mesh.output.splitlines() if "configuration refused" in line]
    assert len(refused) == 1
    assert "bad.yaml" in refused[0]
    assert "Trigger lost" in refused[0]
    assert "nowhere" in refused[0]
