"""Running the gateway: uvicorn in this process, and the start-up summary `cemesh up` prints.

While serving, file changes under `--config` and in functions' func.yaml, and SIGHUP, are
applied live (gateway/watch.py, gateway/reconciler.py).

Shutdown order on SIGINT/SIGTERM (uvicorn's own handling): stop accepting connections, finish
in-flight requests, then the app's lifespan stops the dispatcher, which gives in-flight
deliveries `shutdown_grace` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import uvicorn

from gateway.http.app import create_app
from gateway.http.limits import bounded_protocol
from gateway.mesh import LoadedConfig, Mesh
from gateway.observability.live import LiveAwareServer
from gateway.settings import Settings
from gateway.watch import ConfigWatcher

log = logging.getLogger(__name__)


def summary(settings: Settings, loaded: LoadedConfig) -> str:
    config = loaded.config
    base = f"http://{settings.host}:{settings.port}"
    lines = [f"cemesh: broker {settings.broker_url}, state {settings.state_url}"]
    lines.append("brokers:")
    for broker in config.brokers.values():
        lines.append(f"  {broker.key}  POST {base}/{broker.namespace}/{broker.name}")
    lines.append("triggers:")
    for trigger in config.triggers:
        lines.append(
            f"  {trigger.key} on {trigger.broker}: {trigger.filter.description} "
            f"-> {trigger.subscriber.describe()}"
        )
    if not config.triggers:
        lines.append("  (none)")
    lines.append("functions:")
    for project in loaded.functions:
        lines.append(
            f"  {project.name} ({project.runtime}, invoke {project.invoke}) {project.path}"
        )
    if not loaded.functions:
        lines.append("  (none)")
    if config.skipped:
        lines.append("not run locally (cluster only):")
        for obj in config.skipped:
            lines.append(f"  {obj.kind} {obj.name} ({obj.api_version}) from {obj.origin}")
    lines.append(
        f"listening on {base}  (POST {base}/ publishes to default/default; docs {base}/docs)"
    )
    return "\n".join(lines)


async def serve(
    settings: Settings, loaded: LoadedConfig, announce: Callable[[], None] = lambda: None
) -> None:
    """Start the mesh, then serve; on a signal the server stops taking requests first, then
    the mesh stops (in-flight deliveries get `shutdown_grace`)."""
    mesh = Mesh.build(settings, loaded)
    try:
        await mesh.start()
    except BaseException:
        await _stop_quietly(mesh)
        raise
    announce()
    watcher = ConfigWatcher(mesh.reconciler, settings.config, settings.functions)
    watcher.install_sighup()
    watching = asyncio.create_task(watcher.run(), name="config watcher")
    try:
        await _serve(settings, create_app(settings, mesh=mesh))
    finally:
        watcher.stop()
        await asyncio.gather(watching, return_exceptions=True)
        await mesh.stop()


async def _stop_quietly(mesh: Mesh) -> None:
    try:
        await mesh.stop()
    except Exception:  # a half-started mesh: report the start-up error, not this one
        log.debug("stopping a half-started mesh failed", exc_info=True)


async def _serve(settings: Settings, app: Any) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
        lifespan="on",
        http=bounded_protocol(
            settings.max_header_bytes, settings.max_headers, settings.header_timeout
        ),
    )
    await LiveAwareServer(config).serve()
