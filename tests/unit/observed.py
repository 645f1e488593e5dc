"""A small observed mesh for unit tests: the real memory broker and dispatcher, an app with
`install_observability`, and an ingress that keeps the gateway's contract
(`accepted_listeners`, `before_publish`) without its auth, limits and state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from brokers.codec import from_http, headers_from_asgi
from brokers.delivery import DeliverySpec, Destination
from brokers.dispatch import Dispatcher, Response, ingress_stamp
from brokers.event import Event
from brokers.filters import compile_attributes
from brokers.memory import MemoryBroker
from brokers.triggers import BrokerSpec, MeshConfig, TriggerSpec
from gateway.app import problem_response
from gateway.observability import Observability, install_observability
from gateway.problems import HTTPProblem


@dataclass
class Answers:
    """The Transport port's double: answers by destination URI, records what it was sent."""

    statuses: dict[str, int] = field(default_factory=dict)
    replies: dict[str, Response] = field(default_factory=dict)
    sent: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    async def post(
        self,
        destination: Destination,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> Response:
        uri = destination.uri or f"function:{destination.function}"
        self.sent.append((uri, dict(headers)))
        if uri in self.replies:
            return self.replies[uri]
        return Response(self.statuses.get(uri, 200), {}, b"")


class MiniIngress:
    """`POST /{namespace}/{broker}` reduced to the contract observability hooks into."""

    def __init__(self, broker: MemoryBroker, config: MeshConfig) -> None:
        self.broker = broker
        self.config = config
        self.accepted_listeners: list[Callable[[str, list[Event]], None]] = []
        self.before_publish: list[Callable[[dict[str, str], list[Event]], list[Event]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope.get("path_params") or {}
        key = f"{params.get('namespace', 'default')}/{params.get('broker', 'default')}"
        status = 404
        if key in self.config.brokers:
            body = (await receive()).get("body", b"")
            headers = headers_from_asgi(scope["headers"])
            _, events = from_http(headers, body)
            events = [ingress_stamp(e) for e in events]
            for hook in self.before_publish:
                events = hook(headers, events)
            await self.broker.publish(key, events)
            for listener in self.accepted_listeners:
                listener(key, events)
            status = 202
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@dataclass
class Loaded:
    functions: list[Any] = field(default_factory=list)


@dataclass
class MeshView:
    """The parts of gateway.mesh.Mesh that observability reads."""

    config: MeshConfig
    broker: MemoryBroker
    dispatcher: Dispatcher
    loaded: Loaded = field(default_factory=Loaded)


def trigger(name: str, event_type: str, uri: str, retry: int = 0) -> TriggerSpec:
    delivery = DeliverySpec(retry=retry, backoff_delay=0.01)
    return TriggerSpec(
        "default",
        name,
        "default",
        Destination(uri=uri),
        compile_attributes({"type": event_type}),
        delivery,
    )


@dataclass
class Observed:
    app: FastAPI
    observability: Observability
    mesh: MeshView
    answers: Answers

    async def close(self) -> None:
        await self.mesh.dispatcher.stop(1.0)
        await self.mesh.broker.close()
        await self.observability.close()


async def observed_mesh(
    triggers: Sequence[TriggerSpec], answers: Answers, settings: Any = None
) -> Observed:
    config = MeshConfig({"default/default": BrokerSpec("default", "default")}, list(triggers))
    broker = MemoryBroker()
    await broker.open(config)
    mesh = MeshView(config, broker, Dispatcher(config, broker, answers))
    app = FastAPI()

    async def problem(request: Request, exc: Exception) -> StarletteResponse:
        assert isinstance(exc, HTTPProblem)
        return problem_response(exc, request.url.path)

    app.add_exception_handler(HTTPProblem, problem)
    ingress = MiniIngress(broker, config)
    app.router.routes.append(Route("/{namespace}/{broker}", ingress, methods=["POST"]))
    observability = install_observability(app, ingress, settings)
    observability.attach(mesh)
    await mesh.dispatcher.start()
    return Observed(app, observability, mesh, answers)


def binary(event_id: str, event_type: str, **extra: str) -> dict[str, str]:
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/test"}
    headers["ce-type"] = event_type
    headers.update(extra)
    return headers


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
