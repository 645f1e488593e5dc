"""Issue 12 item 1: a 202 only for an event that is in the broker, across SIGKILLs of
`cemesh up` with Redis state on RabbitMQ.

Clients send a stream of events and retry each until it is answered 202 (a 202 marked
`cemesh-duplicate` included), as a client of a broker should. `cemesh up` is SIGKILLed several
times mid-stream and started again. Every acknowledged event must reach the subscriber: a
dedup claim left by a publish that never confirmed would answer the retry "duplicate" for an
event that is nowhere.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import aiohttp
import pytest

from tests.e2e.harness import (
    MeshProcess,
    Sink,
    delete_rabbitmq_prefix,
    delete_redis_prefix,
    write,
)

pytestmark = [pytest.mark.connected, pytest.mark.e2e]

AMQP_URL: Final = os.environ.get("CEMESH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL: Final = os.environ.get("CEMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
EVENTS: Final = 2000
WORKERS: Final = 8
KILLS: Final = 3


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    started = await Sink().start()
    yield started
    await started.stop()


class Stream:
    """Workers that send events `0..EVENTS-1`, each retried until it is answered 202."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.accepted: set[str] = set()
        self.duplicates = 0
        self.refused = 0
        self._progress = asyncio.Condition()

    async def reached(self, count: int) -> None:
        """Wait until `count` events were accepted."""
        async with self._progress:
            await self._progress.wait_for(lambda: len(self.accepted) >= count)

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._worker(session, w) for w in range(WORKERS)))

    async def _worker(self, session: aiohttp.ClientSession, first: int) -> None:
        for n in range(first, EVENTS, WORKERS):
            await self._send(session, f"crash-{n}")

    async def _send(self, session: aiohttp.ClientSession, event_id: str) -> None:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": "/crash",
            "ce-type": "com.example.crash",
            "content-type": "application/json",
        }
        for _ in range(600):
            try:
                async with session.post(self.url, headers=headers, data=b"{}") as response:
                    await response.read()
                    if response.status == 202:
                        self.accepted.add(event_id)
                        self.duplicates += "cemesh-duplicate" in response.headers
                        async with self._progress:
                            self._progress.notify_all()
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.refused += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"{event_id} was never accepted")


async def test_sigkill_mid_stream_loses_no_acknowledged_event(tmp_path: Path, sink: Sink) -> None:
    prefix = f"crash{uuid.uuid4().hex[:10]}"
    write(
        tmp_path / "config" / "mesh.yaml",
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\n"
        "metadata: {name: default, namespace: default}\n---\n"
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        "metadata: {name: all, namespace: default}\n"
        f"spec: {{broker: default, subscriber: {{uri: '{sink.url}/all'}}}}\n",
    )
    mesh = MeshProcess(
        tmp_path / "config",
        extra=["--broker", AMQP_URL, "--state", f"{REDIS_URL}?prefix={prefix}"],
        env={"CEMESH_BROKER_PREFIX": prefix},
    )
    await asyncio.to_thread(mesh.start)
    stream = Stream(mesh.url + "/default/default")
    try:
        sending = asyncio.create_task(stream.run())
        for kill in range(1, KILLS + 1):
            await stream.reached(kill * EVENTS // (KILLS + 1))
            await asyncio.to_thread(mesh.kill)
            await asyncio.sleep(0.3)  # retries meet a closed port meanwhile
            await asyncio.to_thread(mesh.start)
        await sending
        assert len(stream.accepted) == EVENTS
        delivered: set[str] = set()
        for _ in range(300):
            delivered = {r.headers["ce-id"] for r in sink.on("/all")}
            if stream.accepted <= delivered:
                break
            await asyncio.sleep(0.1)
        lost = sorted(stream.accepted - delivered)
        assert lost == [], (
            f"{len(lost)} of {EVENTS} acknowledged events never delivered "
            f"({stream.duplicates} duplicate answers, {stream.refused} refused tries): {lost[:10]}"
        )
        assert stream.refused > 0, "the kills did not land mid-stream"
    finally:
        await asyncio.to_thread(mesh.stop)
        await delete_rabbitmq_prefix(prefix)
        await delete_redis_prefix(prefix)
