"""Broker ingress, Knative's `POST /{namespace}/{broker}`, as a bare ASGI endpoint.

Bare ASGI rather than a FastAPI route: FastAPI's per-request cost is ~4x plain ASGI on this
machine (BASELINES.md) and this is the hot path. It is still mounted in the FastAPI app and
documented in its OpenAPI. Statuses: 202 accepted (durably, when the broker is durable),
400 invalid event or exhausted TTL, 404 unknown broker, 413 too large, 415 unreadable content
type, 503 not accepted (retry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from brokers.codec import BATCH, from_http, headers_from_asgi, media_type, to_binary
from brokers.errors import BrokerError, UnknownBroker
from brokers.event import Event
from brokers.knative import TTL_ATTRIBUTE, ingress_stamp, now_rfc3339, route_reply, ttl_of
from brokers.state import duplicate_headers
from gateway.http.asgi import Receive, Scope, Send, read_body, send_problem, tenant_of
from gateway.http.problems import HTTPProblem, from_exception
from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.mesh import Mesh

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AttributeLimits:
    """Bounds on one event's attributes, checked before anything is published: every
    attribute travels in a RabbitMQ header frame (128 KiB by default) and in HTTP headers on
    delivery, and an over-long one would close the connection every tenant shares."""

    count: int = 100
    value_bytes: int = 8 * 1024
    total_bytes: int = 32 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> AttributeLimits:
        return cls(
            settings.max_attributes, settings.max_attribute_bytes, settings.max_attributes_bytes
        )


def check_attributes(event: Event, limits: AttributeLimits) -> None:
    """400 for too many attributes, 413 naming the attribute that is too large."""
    attributes = event.attributes
    if len(attributes) > limits.count:
        raise HTTPProblem(
            400,
            "Too Many Attributes",
            f"an event may have at most {limits.count} attributes, this one has {len(attributes)}",
            field="attributes",
        )
    total = 0
    for name, value in attributes.items():
        size = len(name) + _text_bytes(value, limits.value_bytes)
        if size > limits.value_bytes:
            raise HTTPProblem(
                413,
                "Attribute Too Large",
                f"attribute {name} is over {limits.value_bytes} bytes",
                field=name,
            )
        total += size
    if total > limits.total_bytes:
        raise HTTPProblem(
            413,
            "Attributes Too Large",
            f"the event's attributes are over {limits.total_bytes} bytes in all",
            field="attributes",
        )


def _text_bytes(value: object, limit: int) -> int:
    if not isinstance(value, str):
        return 16  # integers and booleans
    length = len(value)
    return length if length * 4 <= limit else len(value.encode("utf-8", "surrogatepass"))


def parse_request(
    headers: dict[str, str], body: bytes, limits: AttributeLimits | None = None
) -> list[Event]:
    """Decode and check events for ingress (TTL exhausted is a 400, as in Knative)."""
    _, events = from_http(headers, body)
    arrival = now_rfc3339()
    bounds = limits or AttributeLimits()
    stamped: list[Event] = []
    for event in events:
        check_attributes(event, bounds)
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
    """The ASGI endpoint of every broker's ingress path."""

    def __init__(self, mesh_ref: Callable[[], Mesh]) -> None:
        self._mesh = mesh_ref
        self.accepted_listeners: list[Callable[[str, list[Event]], None]] = []
        self.before_publish: list[Callable[[dict[str, str], list[Event]], list[Event]]] = []
        self._limits: AttributeLimits | None = None

    async def read_events(
        self, mesh: Mesh, scope: Scope, receive: Receive
    ) -> tuple[str, list[Event]]:
        """Broker key and stamped events of a request (raises HTTPProblem / BrokerError)."""
        params = scope.get("path_params") or {}
        key = f"{params.get('namespace', 'default')}/{params.get('broker', 'default')}"
        if key not in mesh.config.brokers:
            raise UnknownBroker(f"broker {key} does not exist")
        headers = headers_from_asgi(scope["headers"])
        batch = media_type(headers.get("content-type")) == BATCH
        limit = mesh.settings.max_batch_bytes if batch else mesh.settings.max_body_bytes
        body = await read_body(scope, receive, limit, mesh.settings.body_timeout)
        if self._limits is None:
            self._limits = AttributeLimits.from_settings(mesh.settings)
        events = parse_request(headers, body, self._limits)
        for hook in self.before_publish:
            events = hook(headers, events)
        return key, events

    async def publish(self, mesh: Mesh, key: str, events: list[Event]) -> list[tuple[bytes, bytes]]:
        """Dedup, publish what is new and log it (brokers/state); the duplicate headers."""

        def confirmed(published: list[Event]) -> None:
            for listener in self.accepted_listeners:
                listener(key, published)

        admission = await mesh.ledger.publish(mesh.broker, key, events, confirmed)
        for event in admission.published:
            if "replyid" in event.attributes:
                await route_reply(mesh.broker, event, key)
        return duplicate_headers(admission)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mesh = self._mesh()
        try:
            key, events = await self.read_events(mesh, scope, receive)
            extra = await self.publish(mesh, key, events)
        except (HTTPProblem, BrokerError) as exc:
            await send_problem(send, from_exception(exc), scope.get("path"))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [(b"content-length", b"0"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": b""})


class RequestReply:
    """`POST /{namespace}/{broker}/request`: publish with a `correlationid`, answer with the
    first event whose `replyid` matches (200, binary mode) or 504 at the timeout."""

    def __init__(self, ingress: Ingress, mesh_ref: Callable[[], Mesh]) -> None:
        self._ingress = ingress
        self._mesh = mesh_ref
        self.pending: dict[str, int] = {}  # waits held, by tenant

    def _hold(self, tenant: str, limit: int) -> None:
        held = self.pending.get(tenant, 0)
        if held >= limit:
            raise HTTPProblem(
                429,
                "Too Many Pending Requests",
                f"this client already waits for {held} replies (at most {limit})",
                headers={"retry-after": "1"},
                slug="too-many-pending",
            )
        self.pending[tenant] = held + 1

    def _release(self, tenant: str) -> None:
        left = self.pending[tenant] - 1
        if left:
            self.pending[tenant] = left
        else:
            del self.pending[tenant]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mesh = self._mesh()
        tenant = tenant_of(scope)
        try:
            timeout = _timeout(scope, mesh.settings)
            self._hold(tenant, mesh.settings.max_pending_requests)
        except HTTPProblem as exc:
            await send_problem(send, exc, scope.get("path"))
            return
        try:
            reply = await self._request(mesh, scope, receive, timeout)
        except (HTTPProblem, BrokerError) as exc:
            await send_problem(send, from_exception(exc), scope.get("path"))
            return
        finally:
            self._release(tenant)
        await send_event(send, 200, reply)

    async def _request(self, mesh: Mesh, scope: Scope, receive: Receive, timeout: float) -> Event:
        """Publish the request, wait for its reply (504 at the timeout)."""
        key, events = await self._ingress.read_events(mesh, scope, receive)
        if len(events) != 1:
            raise HTTPProblem(
                400, "One Event Expected", "a request must be a single event", field="body"
            )
        correlation = mesh.replies.new_correlation_id()
        request = Event({**events[0].attributes, "correlationid": correlation}, events[0].data)
        waiter = mesh.replies.expect(correlation, key)
        try:
            await self._ingress.publish(mesh, key, [request])
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise HTTPProblem(
                504, "No Reply", f"no reply within {timeout:g}s", field="timeout", slug="no-reply"
            ) from None
        finally:
            mesh.replies.forget(correlation)


async def send_event(send: Send, status: int, event: Event) -> None:
    """Answer with an event in binary mode."""
    headers, body = to_binary(event)
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _timeout(scope: Scope, settings: Settings) -> float:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    raw = (query.get("timeout") or [None])[0]
    if raw is None:
        return float(settings.request_timeout)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= settings.request_timeout_max:
        raise HTTPProblem(
            400,
            "Invalid Timeout",
            f"timeout must be a number of seconds in (0, {settings.request_timeout_max:g}]",
            field="timeout",
        )
    return value
