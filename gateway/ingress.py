"""Broker ingress, Knative's `POST /{namespace}/{broker}`, as a bare ASGI endpoint.

Bare ASGI rather than a FastAPI route: FastAPI's per-request cost is ~4x plain ASGI on this
machine (BASELINES.md) and this is the hot path. It is still mounted in the FastAPI app and
documented in its OpenAPI. Statuses: 202 accepted (durably, when the broker is durable),
400 invalid event or exhausted TTL, 404 unknown broker, 413 too large, 415 unreadable content
type, 503 not accepted (retry).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from brokers.codec import from_http, headers_from_asgi
from brokers.dispatch import TTL_ATTRIBUTE, ingress_stamp, now_rfc3339, ttl_of
from brokers.errors import BrokerError, UnknownBroker
from brokers.event import Event
from gateway.problems import HTTPProblem, asgi_headers, body_of, from_exception

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, or 413 as soon as it is over `limit` bytes."""
    for key, value in scope.get("headers", ()):
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPProblem(400, "Client Disconnected", "the request body was not completed")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(limit: int) -> HTTPProblem:
    return HTTPProblem(
        413, "Content Too Large", f"the request body is over {limit} bytes", field="body"
    )


async def send_problem(send: Send, problem: HTTPProblem, instance: str | None = None) -> None:
    body = body_of(problem, instance)
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": asgi_headers(problem, body),
        }
    )
    await send({"type": "http.response.body", "body": body})


def parse_request(headers: dict[str, str], body: bytes) -> list[Event]:
    """Decode and check events for ingress (TTL exhausted is a 400, as in Knative)."""
    _, events = from_http(headers, body)
    arrival = now_rfc3339()
    stamped: list[Event] = []
    for event in events:
        if TTL_ATTRIBUTE in event.attributes and ttl_of(event) <= 0:
            raise HTTPProblem(
                400,
                "TTL Exhausted",
                "knativebrokerttl is exhausted",
                field=TTL_ATTRIBUTE,
                slug="ttl-exhausted",
            )
        stamped.append(ingress_stamp(event, arrival))
    return stamped


class Ingress:
    """ASGI endpoint; `mesh` provides `.config.brokers`, `.broker` and `.settings`."""

    def __init__(self, mesh_ref: Callable[[], Any]) -> None:
        self._mesh = mesh_ref
        self.accepted_listeners: list[Callable[[str, list[Event]], None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mesh = self._mesh()
        params = scope.get("path_params") or {}
        key = f"{params.get('namespace', 'default')}/{params.get('broker', 'default')}"
        try:
            if key not in mesh.config.brokers:
                raise UnknownBroker(f"broker {key} does not exist")
            body = await read_body(scope, receive, mesh.settings.max_body_bytes)
            events = parse_request(headers_from_asgi(scope["headers"]), body)
            if events:
                await mesh.broker.publish(key, events)
        except (HTTPProblem, BrokerError) as exc:
            await send_problem(send, from_exception(exc), scope.get("path"))
            return
        for listener in self.accepted_listeners:
            listener(key, events)
        await send(
            {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]}
        )
        await send({"type": "http.response.body", "body": b""})
