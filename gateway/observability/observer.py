"""Observability wired into one app: metrics, trace context, the live view.

Why one entry point: the gateway factory (app.py) should not know the pieces. It calls
`install_observability(app, ingress, settings)` once, after its other middleware; the app's
lifespan only has to set `app.state.mesh`. Everything hooks into the mesh through the lists
it already has (ingress `accepted_listeners` and `before_publish`, dispatcher `listeners` and
`reply_hooks`) and the Transport port; nothing patches a class.

The HTTP observer is a pure ASGI middleware (BaseHTTPMiddleware would cost more than the
ingress itself). It times every request and counts ingress requests by broker and status,
request-reply outcomes (`POST /{ns}/{broker}/request`) and direct function calls
(`POST /functions/{name}`). Requests a middleware rejects before routing (auth, limits) are
still attributed by their path, provided the observer is the outermost middleware (installed
last).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brokers.event import Event
from brokers.transport import Transport
from brokers.triggers import TriggerSpec
from gateway.http.ingress import Ingress
from gateway.http.problems import PROBLEM_JSON, HTTPProblem
from gateway.loading import LoadedConfig
from gateway.observability.live import QUEUE_SIZE, EventStream, LiveHub, ui_page
from gateway.observability.metrics import CONTENT_TYPE, UNKNOWN, Metrics, TimedTransport
from gateway.observability.tracing import (
    RequestTrace,
    TracedTransport,
    Tracing,
    current_request,
    otel_spans,
    stamp_reply,
)
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.mesh import Mesh


@dataclass(frozen=True, slots=True)
class ObservabilityConfig:
    """The settings this module reads; each has a default so Settings may lack it.

    - `trace_start`: start a new trace for events that arrive with no trace context;
    - `otel_endpoint`: OTLP/HTTP endpoint for spans (needs the optional opentelemetry-sdk);
    - `live_queue`: frames a slow live-view client may fall behind before frames are dropped;
    - `live_payload_bytes`: event data shown in the live view (0: none, as in logs).
    """

    trace_start: bool = False
    otel_endpoint: str | None = None
    live_queue: int = QUEUE_SIZE
    live_payload_bytes: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ObservabilityConfig:
        return cls(
            trace_start=settings.trace_start,
            otel_endpoint=settings.otel_endpoint or None,
            live_payload_bytes=settings.live_payload_bytes,
        )


class Observability:
    def __init__(self, config: ObservabilityConfig, ingress: Ingress, tracing: Tracing) -> None:
        self.config = config
        self.ingress = ingress
        self.tracing = tracing
        self.metrics = Metrics()
        self.live = LiveHub(queue_size=config.live_queue, payload_limit=config.live_payload_bytes)
        self.metrics.live = self.live
        self.mesh: Mesh | None = None
        self.brokers: frozenset[str] = frozenset()  # label values allowed (bounded cardinality)
        self.functions: frozenset[str] = frozenset()

    def attach(self, mesh: Mesh) -> None:
        """Hook into a built mesh (before or after it starts)."""
        self.mesh = mesh
        self.metrics.mesh = mesh
        self.configured(mesh.loaded)
        mesh.reconciler.observers.append(self.configured)
        mesh.dispatcher.listeners.extend([self.metrics.on_delivery, self.live.on_delivery])
        reply_hooks = getattr(mesh.dispatcher, "reply_hooks", None)
        if reply_hooks is not None:
            reply_hooks.append(self.reply_hook)
            self.live.sees_replies = True
        transport: Transport = TimedTransport(mesh.dispatcher.transport, self.metrics)
        if self.tracing.spans is not None:
            transport = TracedTransport(transport, self.tracing.spans)
        mesh.dispatcher.transport = transport

    def configured(self, loaded: LoadedConfig) -> None:
        """Follow the mesh's configuration (at attach, and after every applied reload)."""
        self.live.attach(loaded.config)
        self.brokers = frozenset(loaded.config.brokers)
        self.functions = frozenset(p.name for p in loaded.functions)

    def reply_hook(self, trigger: TriggerSpec, request: Event, reply: Event) -> Event:
        """Dispatcher reply hook: the reply continues the request's trace, and the live view
        shows it as it is published."""
        reply = stamp_reply(request, reply)
        self.live.on_reply(trigger.broker_key, request, reply)
        return reply

    async def close(self) -> None:
        """End live streams and flush spans."""
        self.live.close()
        if self.tracing.spans is not None:
            await asyncio.to_thread(self.tracing.shutdown)

    def stamp(self, headers: Mapping[str, str], events: list[Event]) -> list[Event]:
        """Before-publish hook for any endpoint that publishes events (trace context)."""
        return self.tracing.stamp(headers, events)

    def broker_label(self, key: str) -> str:
        return key if key in self.brokers else UNKNOWN

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        """Attribute one finished request. The router leaves `endpoint` and `path_params` in
        the scope; a request rejected before routing has no `endpoint` and is classified by
        its path, with the same rules as the ingress paths themselves."""
        endpoint = scope.get("endpoint")
        if endpoint is self.ingress:
            params = scope.get("path_params") or {}
            key = f"{params.get('namespace', 'default')}/{params.get('broker', 'default')}"
            self.metrics.observe_ingress(key if key in self.brokers else UNKNOWN, status, seconds)
            return
        if scope.get("method") != "POST":
            return
        parts = [p for p in scope.get("path", "").split("/") if p]
        if len(parts) == 2 and parts[0] == "functions":
            name = parts[1] if parts[1] in self.functions else UNKNOWN
            self.metrics.observe_function_call(name, status)
        elif len(parts) == 3 and parts[2] == "request":
            key = f"{parts[0]}/{parts[1]}"
            self.metrics.observe_request_reply(self.broker_label(key), status, seconds)
        elif endpoint is None and len(parts) in (0, 2):
            key = f"{parts[0]}/{parts[1]}" if parts else "default/default"
            self.metrics.observe_ingress(self.broker_label(key), status, seconds)


class HttpObserver:
    """Pure ASGI middleware: status and time of each request, and the ingress span's end."""

    def __init__(self, app: ASGIApp, observability: Observability) -> None:
        self.app = app
        self.observability = observability
        self.spans = observability.tracing.spans is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        request = RequestTrace() if self.spans else None
        token = current_request.set(request) if request is not None else None

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, observed)
        finally:
            self.observability.record(scope, status, time.perf_counter() - start)
            if request is not None and token is not None:
                self.observability.tracing.end_ingress(status)
                current_request.reset(token)


def _follow_lifespan(app: FastAPI, obs: Observability) -> None:
    """Attach to the mesh the app's own lifespan puts in `app.state.mesh`, and close after it.

    Wrapping the router's lifespan (Starlette's public `lifespan_context`) keeps the factory's
    wiring to one line whichever way its lifespan gets its mesh (built there, or started by
    `cemesh up` before the server listens). Attaching after the mesh started loses nothing:
    no request is served before the lifespan has entered.
    """
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        try:
            async with inner(target) as state:
                mesh = getattr(app.state, "mesh", None)
                if mesh is not None and obs.mesh is not mesh:
                    obs.attach(mesh)
                yield state
        finally:
            await obs.close()

    app.router.lifespan_context = lifespan


def install_observability(
    app: FastAPI, ingress: Ingress, settings: Settings, *, tracing: Tracing | None = None
) -> Observability:
    """Add `/metrics`, `/events/stream`, `/ui` and the HTTP observer to `app`.

    `ingress` is the broker-ingress endpoint: its `accepted_listeners` feed the metrics and the
    live view, and its `before_publish` hooks (when it has them) get the trace stamping.
    `tracing` replaces the one built from settings (tests pass one with an in-memory exporter).
    Call it after adding other middleware, so the observer is the outermost one.
    """
    config = ObservabilityConfig.from_settings(settings)
    if tracing is None:
        tracing = Tracing(start_traces=config.trace_start, spans=otel_spans(config.otel_endpoint))
    obs = Observability(config, ingress, tracing)
    app.state.observability = obs
    ingress.accepted_listeners.extend([obs.metrics.on_accepted, obs.live.on_accepted])
    hooks = getattr(ingress, "before_publish", None)
    if hooks is not None:
        hooks.append(tracing.stamp)
    app.add_middleware(HttpObserver, observability=obs)
    _follow_lifespan(app, obs)
    page = ui_page()

    @app.get(
        "/metrics",
        tags=["observability"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}}},
    )
    async def metrics() -> Response:
        return Response(obs.metrics.render(), media_type=CONTENT_TYPE)

    @app.get(
        "/events/stream",
        tags=["observability"],
        summary="Accepted events, matched triggers and delivery outcomes (server-sent events)",
        response_class=EventStream,
        status_code=200,
        responses={
            200: {"content": {"text/event-stream": {}}},
            404: {"description": "Unknown broker", "content": {PROBLEM_JSON: {}}},
        },
    )
    async def stream(
        broker: str | None = Query(None, description="Only this broker (namespace/name)"),
    ) -> Response:
        hub = obs.live
        if hub.config is None or hub.closed:
            raise HTTPProblem(503, "Not Ready", "the mesh is not running")
        if broker is not None and broker not in hub.config.brokers:
            raise HTTPProblem(
                404, "Unknown Broker", f"broker {broker} does not exist", field="broker"
            )
        return EventStream(hub, broker)

    @app.get("/ui", tags=["observability"], summary="Live view", response_class=HTMLResponse)
    async def ui() -> HTMLResponse:
        return HTMLResponse(page, headers={"cache-control": "no-cache"})

    return obs
