"""The real gateway in-process for unit tests: `create_app(settings, broker=MemoryBroker())`
driven through `httpx.ASGITransport` with the app's lifespan. Destinations are sink functions
(tests.builders.sink_function) the mesh hosts in-process: no socket anywhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from brokers.memory import MemoryBroker
from gateway.http.app import create_app
from gateway.mesh import Mesh
from gateway.observability.observer import Observability
from gateway.settings import Settings
from tests.builders import binary as binary  # re-exported with the rest of the toolkit
from tests.builders import broker_yaml, documents, sink_function, trigger_yaml, write


@dataclass
class Gateway:
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def mesh(self) -> Mesh:
        mesh: Mesh = self.app.state.mesh
        return mesh

    @property
    def observability(self) -> Observability:
        observability: Observability = self.app.state.observability
        return observability

    def received(self, function: str) -> list[tuple[dict[str, str], bytes]]:
        """What the sink function `function` was sent: headers and body of each request."""
        received: list[tuple[dict[str, str], bytes]] = self.mesh.functions.hosted[
            function
        ].instance.received
        return received


@asynccontextmanager
async def gateway(
    directory: Path,
    *triggers: str,
    sinks: Mapping[str, int] | None = None,
    config: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Gateway]:
    """The app on `default/default` (or `config`) plus `triggers`; `sinks` are the sink
    functions to host, by name, with the status each answers."""
    write(directory / "config" / "mesh.yaml", documents(config or broker_yaml(), *triggers))
    for name, status in (sinks or {}).items():
        sink_function(directory / "functions", name, status)
    settings = Settings(config=directory / "config", functions=directory / "functions", **overrides)
    app = create_app(settings, broker=MemoryBroker())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield Gateway(app, http)


def retrying(retry: int) -> dict[str, Any]:
    """A Trigger's delivery: `retry` retries 10 ms apart."""
    return {"retry": retry, "backoffDelay": "PT0.01S"}


def route(name: str, event_type: str, function: str | None = None, retry: int = 0) -> str:
    """Trigger `name` on `event_type` to the sink function `function` (default: `name`)."""
    return trigger_yaml(name, function=function or name, type=event_type, delivery=retrying(retry))


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
