"""The cemesh gateway and dispatcher as a func-python `invoke: http` function.

Why a wrapper and not the FastAPI app itself: func-python's HTTP middleware owns the ASGI
lifespan (it answers it by calling `start(cfg)` and `stop()`), answers `/health/liveness` and
`/health/readiness` itself, and hands every other request to `handle(scope, receive, send)`.
So this object runs the gateway app's own lifespan (which opens the broker and starts the
dispatcher) and forwards requests to the app once that lifespan has started.

func-python 0.8.1 calls `start` and `stop` synchronously from inside its event loop and does not
await anything they return. `start` therefore schedules the app's startup on the running loop;
`ready()` stays false (Knative keeps the pod out of rotation) and requests wait until it is done.
`stop` asks the app to shut down; Hypercorn has already stopped taking requests by then. If the
runtime exits before the dispatcher finished, unacknowledged RabbitMQ deliveries are redelivered
to another replica (at-least-once), which is why `deploy.options.scale.min` keeps one running.

In a cluster everything comes from the environment Knative gives the pod (`CEMESH_*`, see
gateway/settings.py); the root func.yaml mounts the mesh config ConfigMap at /etc/cemesh/config.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final

from pydantic import ValidationError

from gateway.settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
AppFactory = Callable[[Settings], ASGIApp]

STARTUP_TIMEOUT: Final = 120.0
ENV_PREFIX: Final = "CEMESH_"


def new() -> Function:
    """Called once by the func-python runtime to create the function instance."""
    return Function()


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Settings from the `CEMESH_*` entries of `env` (the mapping func-python passes to start).

    Only `env` is read, not `os.environ`, so what the runtime hands over is what is used.
    """
    upper = {key.upper(): value for key, value in env.items()}
    values = {
        name: upper[f"{ENV_PREFIX}{name.upper()}"]
        for name in Settings.model_fields
        if f"{ENV_PREFIX}{name.upper()}" in upper
    }
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = f"{ENV_PREFIX}{'.'.join(map(str, first['loc'])).upper()}"
        raise ValueError(f"invalid setting {name}: {first['msg']}") from None


def _default_app(settings: Settings) -> ASGIApp:
    from gateway.http.app import create_app

    app: ASGIApp = create_app(settings)
    return app


class Lifespan:
    """Drives an ASGI app's lifespan protocol from outside a server, as a background task."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._started = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ready = False
        self.error: str | None = None

    @property
    def stopping(self) -> bool:
        return self._shutdown.is_set()

    def begin(self) -> None:
        """Start the app's startup on the running loop (RuntimeError when there is none)."""
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(), name="cemesh-lifespan")

    def request_stop(self) -> None:
        self._shutdown.set()

    async def wait_started(self, timeout: float) -> None:
        await asyncio.wait_for(self._started.wait(), timeout)

    async def wait_stopped(self, timeout: float) -> None:
        """Request shutdown and wait for it (tests and embedders; func-python cannot await)."""
        self.request_stop()
        if self._task is not None:
            await asyncio.wait_for(self._stopped.wait(), timeout)

    async def _run(self) -> None:
        calls = 0

        async def receive() -> Message:
            nonlocal calls
            calls += 1
            if calls == 1:
                return {"type": "lifespan.startup"}
            await self._shutdown.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: Message) -> None:
            kind = message.get("type")
            if kind == "lifespan.startup.complete":
                self.ready = True
                self._started.set()
            elif kind == "lifespan.startup.failed":
                self.error = str(message.get("message") or "startup failed")
                self._started.set()
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.ready = False
                self._stopped.set()

        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        try:
            await self._app(scope, receive, send)
        except Exception as exc:
            if self.error is None:
                self.error = f"{type(exc).__name__}: {exc}"
            log.error("cemesh failed to start: %s", self.error)
        finally:
            self.ready = False
            self._started.set()
            self._stopped.set()


class Function:
    """The object func-python hosts: start/stop run the gateway's lifespan, handle serves it."""

    def __init__(
        self, settings: Settings | None = None, app_factory: AppFactory | None = None
    ) -> None:
        self._settings = settings
        self._app_factory = app_factory or _default_app
        self._app: ASGIApp | None = None
        self._lifespan: Lifespan | None = None

    def start(self, cfg: Mapping[str, str]) -> None:
        """Build the gateway from `cfg` and begin its startup (see the module docstring)."""
        settings = self._settings or settings_from_env(cfg)
        if self._settings is None:
            from gateway.observability.logs import configure

            configure(settings.log_level, settings.log_format)
        self._app = self._app_factory(settings)
        self._lifespan = Lifespan(self._app)
        # Without a running loop (called from plain code) the first request begins it.
        with contextlib.suppress(RuntimeError):
            self._lifespan.begin()

    def stop(self) -> None:
        if self._lifespan is not None:
            self._lifespan.request_stop()

    async def astop(self, timeout: float = 30.0) -> None:
        """Stop and wait: for callers that can await, unlike func-python 0.8.1."""
        if self._lifespan is not None:
            await self._lifespan.wait_stopped(timeout)

    def alive(self) -> tuple[bool, str]:
        if self._lifespan is not None and self._lifespan.error:
            return False, self._lifespan.error
        return True, "alive"

    def ready(self) -> tuple[bool, str]:
        lifespan = self._lifespan
        if lifespan is None:
            return False, "not started"
        if lifespan.error:
            return False, lifespan.error
        if lifespan.stopping:
            return False, "stopping"
        return (True, "ready") if lifespan.ready else (False, "starting")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        lifespan, app = self._started()
        lifespan.begin()
        try:
            await lifespan.wait_started(STARTUP_TIMEOUT)
        except TimeoutError:
            await _unavailable(send, "the mesh is still starting")
            return
        if not lifespan.ready:
            await _unavailable(send, lifespan.error or "the mesh is not running")
            return
        await app(scope, receive, send)

    def _started(self) -> tuple[Lifespan, ASGIApp]:
        if self._lifespan is None or self._app is None:
            # Functions may read the environment (Knative gives them theirs).
            self.start(dict(os.environ))
        if self._lifespan is None or self._app is None:
            raise RuntimeError("start() did not build the gateway")
        return self._lifespan, self._app


async def _unavailable(send: Send, detail: str) -> None:
    body = json.dumps(
        {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": detail}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"retry-after", b"1"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
