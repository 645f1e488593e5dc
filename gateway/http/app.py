"""The gateway application factory.

`create_app(settings)` returns a FastAPI app whose lifespan assembles and starts the mesh
(broker, functions, dispatcher); nothing is a module-level singleton. The ingress paths are
bare ASGI endpoints (see ingress.py) added to the same router and to the OpenAPI document.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from brokers.base import Broker
from brokers.errors import BrokerError
from brokers.state import State
from cdevents.errors import CDEventsError
from gateway.http.admin import admin_router
from gateway.http.auth import load_tokens
from gateway.http.direct import functions_router
from gateway.http.guard import Guard, StateRateLimiter, function_namespace_lookup
from gateway.http.ingress import Ingress, RequestReply
from gateway.http.problems import PROBLEM_JSON, HTTPProblem, body_of, from_exception
from gateway.http.webhooks import webhooks_router
from gateway.mesh import LoadedConfig, Mesh
from gateway.observability.observer import install_observability
from gateway.settings import Settings

log = logging.getLogger(__name__)

INGRESS_DOC = {
    "summary": "Publish CloudEvents to a broker (Knative broker ingress)",
    "description": (
        "Binary, structured (`application/cloudevents+json`) or batch "
        "(`application/cloudevents-batch+json`) mode, chosen by Content-Type alone. "
        "202 when accepted; 400 invalid event or exhausted TTL; 404 unknown broker; "
        "413 too large; 415 unreadable content type; 503 not accepted (retry after)."
    ),
    "requestBody": {
        "required": True,
        "content": {
            "application/cloudevents+json": {"schema": {"type": "object"}},
            "application/cloudevents-batch+json": {"schema": {"type": "array"}},
            "*/*": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        str(code): {"description": text, **({"content": {PROBLEM_JSON: {}}} if code != 202 else {})}
        for code, text in [
            (202, "Accepted"),
            (400, "Invalid CloudEvent"),
            (404, "Unknown broker"),
            (413, "Too large"),
            (415, "Unsupported media type"),
            (503, "Not accepted, retry"),
        ]
    },
}


def state_of(mesh: Mesh | None) -> State | None:
    return mesh.state if mesh is not None else None


def problem_response(problem: HTTPProblem, instance: str | None = None) -> Response:
    return Response(
        body_of(problem, instance), problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


def create_app(
    settings: Settings,
    *,
    broker: Broker | None = None,
    state: State | None = None,
    loaded: LoadedConfig | None = None,
    mesh: Mesh | None = None,
) -> FastAPI:
    """The gateway app. With `mesh`, the caller has started it and stops it (`cemesh up`
    does, so start-up errors are reported before the server listens); otherwise the app's
    lifespan builds, starts and stops one."""
    holder: dict[str, Mesh] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if mesh is not None:
            holder["mesh"] = app.state.mesh = mesh
            yield
            return
        built = Mesh.build(settings, loaded, broker, state=state)
        holder["mesh"] = app.state.mesh = built
        await built.start()
        try:
            yield
        finally:
            await built.stop()

    app = FastAPI(
        title="cemesh gateway",
        version="0.1.0",
        lifespan=lifespan,
        description="CloudEvents integration mesh: ingress, webhooks, functions.",
    )

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> Response:
        return problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first["loc"][1:]) or None
        return problem_response(
            HTTPProblem(400, "Invalid Request", str(first["msg"]), field=field), request.url.path
        )

    async def _known(request: Request, exc: Exception) -> Response:
        # Typed errors are answers, not crashes: handled here, below Starlette's
        # ServerErrorMiddleware, so no "Exception in ASGI application" traceback is logged.
        problem = from_exception(exc)
        if problem.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return problem_response(problem, request.url.path)

    app.add_exception_handler(BrokerError, _known)
    app.add_exception_handler(CDEventsError, _known)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return problem_response(from_exception(exc), request.url.path)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: the broker can accept events")
    async def readyz() -> JSONResponse:
        mesh = holder.get("mesh")
        ready = bool(mesh and mesh.broker.ready)
        return JSONResponse(
            {"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503
        )

    def get_mesh() -> Mesh:
        return holder["mesh"]

    app.include_router(functions_router(get_mesh))
    app.include_router(admin_router(get_mesh))
    ingress = Ingress(get_mesh)
    app.state.ingress = ingress
    app.include_router(webhooks_router(get_mesh, ingress))
    request_reply = RequestReply(ingress, get_mesh)
    app.router.routes.append(Route("/", ingress, methods=["POST"]))
    app.router.routes.append(Route("/{namespace}/{broker}", ingress, methods=["POST"]))
    app.router.routes.append(
        Route("/{namespace}/{broker}/request", request_reply, methods=["POST"])
    )
    app.add_middleware(
        Guard,
        tokens=load_tokens(settings.tokens_file),
        limiter=StateRateLimiter(lambda: state_of(holder.get("mesh"))),
        max_concurrency=settings.max_concurrency,
        function_namespace=function_namespace_lookup(lambda: holder.get("mesh")),
        default_rate=settings.rate_limit,
        default_burst=settings.rate_burst,
        tenant_concurrency=settings.tenant_concurrency,
    )
    install_observability(app, ingress, settings)  # last: its observer is the outermost middleware

    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = default_openapi()
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in ("namespace", "broker")
        ]
        schema["paths"]["/{namespace}/{broker}"] = {
            "post": {**INGRESS_DOC, "tags": ["ingress"], "parameters": params}
        }
        schema["paths"]["/{namespace}/{broker}/request"] = {
            "post": {
                **INGRESS_DOC,
                "tags": ["request-reply"],
                "parameters": [
                    *params,
                    {
                        "name": "timeout",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "number"},
                        "description": "seconds to wait (default 30)",
                    },
                ],
                "summary": "Publish one event and wait for the event whose replyid matches",
                "description": "Stamps `correlationid`; 200 with the reply in binary mode, "
                "504 problem+json when none arrives within the timeout.",
            }
        }
        schema["paths"]["/"] = {
            "post": {**INGRESS_DOC, "tags": ["ingress"], "summary": "Publish to default/default"}
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
