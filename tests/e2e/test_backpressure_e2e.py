"""Issue 12 item 7, as a client sees it: with a subscriber that does not keep up, `cemesh up`
on the memory broker answers 503 with Retry-After once a trigger's queue is full, instead of
accepting without bound, and its memory stays bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.harness import MeshProcess, Received, Sink, write

pytestmark = pytest.mark.e2e
LIMIT = 2_000
PAYLOAD = b"x" * 20_000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
async def stuck_sink() -> AsyncIterator[Sink]:
    release = asyncio.Event()

    async def stuck(_: Received) -> web.StreamResponse:
        await release.wait()  # answers only when the test is over
        return web.Response(status=200)

    started = await Sink(responder=stuck).start()
    yield started
    release.set()
    await started.stop()


async def test_a_slow_subscriber_gets_503_not_unbounded_memory(
    tmp_path: Path, stuck_sink: Sink
) -> None:
    write(
        tmp_path / "config" / "mesh.yaml",
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\n"
        "metadata: {name: default, namespace: default}\n---\n"
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        "metadata: {name: slow, namespace: default}\n"
        f"spec: {{broker: default, subscriber: {{uri: '{stuck_sink.url}/slow'}}}}\n",
    )
    mesh = MeshProcess(
        tmp_path / "config",
        env={"CEMESH_MEMORY_QUEUE_LENGTH": str(LIMIT), "CEMESH_SHUTDOWN_GRACE": "1"},
    )
    await asyncio.to_thread(mesh.start)
    try:
        assert mesh.proc is not None
        before = rss_kib(mesh.proc.pid)
        accepted = 0
        refused: aiohttp.ClientResponse | None = None
        async with aiohttp.ClientSession() as session:
            for n in range(LIMIT * 2):
                headers = {
                    "ce-specversion": "1.0",
                    "ce-id": f"bp-{n}",
                    "ce-source": "/bp",
                    "ce-type": "t",
                }
                async with session.post(mesh.url, headers=headers, data=PAYLOAD) as r:
                    await r.read()
                    if r.status == 503:
                        refused = r
                        break
                    assert r.status == 202
                    accepted += 1
        assert refused is not None, f"{accepted} accepted, never 503"
        assert refused.headers["retry-after"] == "1"
        # at most the queue bound, plus what the dispatcher took out to deliver (parallelism)
        assert LIMIT <= accepted <= LIMIT + 150
        grown_mib = (rss_kib(mesh.proc.pid) - before) / 1024
        # 2,100 events of 20 KB queued and logged: ~90 MB; unbounded it would keep growing
        assert grown_mib < 200, f"RSS grew {grown_mib:.0f} MiB"
    finally:
        await asyncio.to_thread(mesh.stop)
