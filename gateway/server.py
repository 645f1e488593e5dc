"""Running the gateway: uvicorn in this process, and the start-up summary `cemesh up` prints.

Shutdown order on SIGINT/SIGTERM (uvicorn's own handling): stop accepting connections, finish
in-flight requests, then the app's lifespan stops the dispatcher, which gives in-flight
deliveries `shutdown_grace` seconds.
"""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.mesh import LoadedConfig
from gateway.settings import Settings


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


async def serve(settings: Settings, loaded: LoadedConfig) -> None:
    app = create_app(settings, loaded=loaded)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None,
        lifespan="on",
    )
    await uvicorn.Server(config).serve()
