"""End-to-end harness: `cemesh up` as a real subprocess, an HTTP sink that records what it
receives (and answers what the test tells it to), and the set-up every e2e test repeats: a
config directory, repo functions copied in, a POST."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.builders import documents
from tests.builders import write as write  # re-exported: the e2e tests import it from here
from tests.conftest import REPO, free_port

CEMESH = [sys.executable, "-m", "gateway.cli"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


Responder = Callable[[Received], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class Sink:
    """An aiohttp server on 127.0.0.1 that records every request."""

    responder: Responder | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Sink:
        self._arrived = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Sink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        item = Received(
            request.path, {k.lower(): v for k, v in request.headers.items()}, await request.read()
        )
        self.received.append(item)
        assert self._arrived is not None
        async with self._arrived:
            self._arrived.notify_all()
        if self.responder is not None:
            result = self.responder(item)
            if asyncio.iscoroutine(result):
                result = await result
            assert isinstance(result, web.StreamResponse)
            return result
        return web.Response(status=200)

    async def wait_for(
        self, count: int, timeout: float = 10.0, path: str | None = None
    ) -> list[Received]:
        """Wait until `count` requests arrived (on `path` if given), return them."""
        assert self._arrived is not None

        def ready() -> bool:
            return len(self.on(path)) >= count

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(ready), timeout)
        return self.on(path)

    async def wait_until(self, ready: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until `ready()` holds after some request arrived; False at the timeout."""
        assert self._arrived is not None
        try:
            async with self._arrived:
                await asyncio.wait_for(self._arrived.wait_for(ready), timeout)
        except TimeoutError:
            return False
        return True

    def on(self, path: str | None) -> list[Received]:
        return [r for r in self.received if path is None or r.path == path]


def cemesh(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`cemesh ARGS...` run to its end from the repo: exit code, stdout and stderr as text."""
    return subprocess.run(
        [*CEMESH, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class MeshProcess:
    """`cemesh up` in a subprocess, on a free port, stopped with SIGTERM."""

    def __init__(
        self,
        config: Path,
        functions: Path | None = None,
        *,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            *CEMESH,
            "up",
            "--config",
            str(config),
            "--port",
            str(self.port),
            "--functions",
            str(functions or config / "no-functions"),
            *extra,
        ]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""
        self.returncode: int | None = None

    def start(self, timeout: float = 30.0) -> MeshProcess:
        self.proc = subprocess.Popen(
            self.args,
            cwd=REPO,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cemesh up exited {self.proc.returncode}:\n{self.stop()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"cemesh up not ready in {timeout}s:\n{self.stop()}")

    def stop(self) -> str:
        if self.proc is None:
            return self.output
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.output, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.output, _ = self.proc.communicate()
        self.returncode = self.proc.returncode
        self.proc = None
        return self.output

    def kill(self) -> None:
        """SIGKILL: no stop, no drain, as a crash or an OOM kill would end it."""
        if self.proc is not None:
            self.proc.kill()
            self.output, _ = self.proc.communicate()
            self.returncode = self.proc.returncode
            self.proc = None

    def __enter__(self) -> MeshProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mesh_config(directory: Path, *parts: str, name: str = "mesh.yaml") -> Path:
    """`directory/config/<name>` holding the YAML documents `parts`; the config directory."""
    return write(directory / "config" / name, documents(*parts)).parent


def copy_function(functions: Path, name: str, source: Path | None = None) -> Path:
    """A copy of the repo's function `name` (or of `source`) under `functions`, without its
    tests, build output and caches."""
    target = functions / name
    shutil.copytree(
        source or REPO / "functions" / name,
        target,
        ignore=shutil.ignore_patterns("tests", ".func", "__pycache__", "node_modules"),
    )
    return target


async def post(
    url: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One POST with aiohttp: status, headers (lower-case names) and body."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, headers=headers, data=body) as r,
    ):
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


REDIS_URL = os.environ.get("CEMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("CEMESH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def delete_redis_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every Redis key a test's mesh wrote under its state prefix."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def delete_rabbitmq_prefix(prefix: str, url: str = AMQP_URL) -> None:
    """Delete the queues and exchanges a test's mesh declared under its broker prefix."""
    from brokers.rabbitmq.broker import RabbitBroker
    from brokers.triggers import MeshConfig

    broker = RabbitBroker(url, prefix=prefix)
    planned = await broker.plan_prune(MeshConfig({}, []))
    if planned:
        await broker.prune(planned)
