"""The live view: accepted events, the triggers they matched and their delivery outcomes, as
server-sent events (`GET /events/stream[?broker=ns/name]`) for tools and for `GET /ui`.

Why server-sent events: one-way, plain HTTP, reconnecting by themselves in every browser
(`EventSource`) and readable with `curl -N`. Frames:

    event: hello      {"brokers": [...], "triggers": [{name, broker, filter, subscriber}]}
    event: accepted   {"broker", "id", "type", "source", "attributes", "triggers": [matched]}
    event: delivery   {"broker", "id", "trigger", "ok", "status", "code", "error", "reply",
                       "retryable", "retries"}  (one per attempt; the client counts them)
    event: dropped    {"count": n}   (this client missed n frames by reading too slowly)

A reply a function sends back appears as its own `accepted` frame with `reply_to`.

The hub must never slow ingress or delivery down: listeners return at once when nobody
watches; otherwise they only queue a `LazyFrame` (the event and outcome as they are, JSON
rendered later, once, by the first writer that needs it) with `put_nowait` into each client's
bounded queue, and a full queue drops the frame and counts it
(`cemesh_live_dropped_events_total`) instead of waiting. Writers wake at most every
`FLUSH_INTERVAL` and send up to `BATCH` frames in one write: a human watching does not need
sub-50 ms updates, and the mesh under load should not pay a wake-up, or more than 1,000
renderings a second, per watcher. Beyond that rate frames are dropped and counted as for a
slow client: the view is for watching; counting is what /metrics is for. Event data is not
streamed unless `payload_limit` is set (as logs, the view shows attributes by default).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from typing import Any, Final

import orjson
import uvicorn
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from brokers.event import Event
from brokers.knative import ARRIVAL_ATTRIBUTE, reply_stamp
from brokers.transport import Outcome
from brokers.triggers import MeshConfig, TriggerSpec
from gateway.observability.metrics import delivery_code

QUEUE_SIZE: Final = 1000
HEARTBEAT: Final = 15.0
FLUSH_INTERVAL: Final = 0.05
BATCH: Final = 50  # frames per write: at most 1,000 frames/s per client
KEEPALIVE: Final = b": keepalive\n\n"


def frame(kind: str, payload: Mapping[str, Any]) -> bytes:
    """One SSE frame. JSON escapes newlines, so the data is always one line."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class LazyFrame:
    """A frame queued by a hook and rendered by a writer, once for every client."""

    __slots__ = ("_bytes", "_render")

    def __init__(self, render: Callable[[], bytes]) -> None:
        self._render = render
        self._bytes: bytes | None = None

    def render(self) -> bytes:
        if self._bytes is None:
            self._bytes = self._render()
        return self._bytes


def ui_page() -> bytes:
    """The built-in page, shipped as package data (no build step)."""
    return resources.files("gateway").joinpath("static/ui.html").read_bytes()


@dataclass(eq=False, slots=True)
class Client:
    broker: str | None
    queue: asyncio.Queue[LazyFrame | None]
    dropped: int = 0
    reported: int = 0


@dataclass(slots=True)
class LiveHub:
    """Fans mesh activity out to the connected clients."""

    queue_size: int = QUEUE_SIZE
    payload_limit: int = 0
    dropped: int = 0  # frames dropped for every client, for cemesh_live_dropped_events_total
    config: MeshConfig | None = None
    sees_replies: bool = False  # set when the dispatcher calls on_reply through a reply hook
    clients: set[Client] = field(default_factory=set)
    closed: bool = False
    _triggers: dict[str, list[TriggerSpec]] = field(default_factory=dict)

    def attach(self, config: MeshConfig) -> None:
        self.config = config
        self._triggers = {key: config.triggers_of(key) for key in config.brokers}
        self.closed = False

    def subscribe(self, broker: str | None) -> Client:
        client = Client(broker, asyncio.Queue(self.queue_size))
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    def close(self) -> None:
        """End every stream (on shutdown: open streams would hold a graceful stop)."""
        self.closed = True
        for client in self.clients:
            while not client.queue.empty():
                client.queue.get_nowait()
            client.queue.put_nowait(None)

    def hello(self) -> bytes:
        config = self.config
        brokers = sorted(config.brokers) if config else []
        triggers = [
            {
                "name": t.key,
                "broker": t.broker_key,
                "filter": t.filter.description,
                "subscriber": t.subscriber.describe(),
                "retries": t.delivery.retry,
            }
            for t in (config.triggers if config else ())
        ]
        return frame("hello", {"brokers": brokers, "triggers": triggers})

    def on_accepted(self, broker: str, events: list[Event]) -> None:
        """Ingress `accepted_listeners` hook: cheap when nobody watches."""
        if not self.clients:
            return
        targets = self._targets(broker)
        for event in events:
            if targets:
                self._offer(targets, partial(self._accepted_frame, broker, event))

    def on_delivery(self, trigger: TriggerSpec, event: Event, outcome: Outcome) -> None:
        """Dispatcher `listeners` hook, after every delivery attempt."""
        if not self.clients:
            return
        targets = self._targets(trigger.broker_key)
        if not targets:
            return
        at = time.time()
        self._offer(targets, partial(self._delivery_frame, trigger, event, outcome, at))
        if outcome.reply is not None:
            stamped = reply_stamp(event, outcome.reply)
            if stamped is None or not self.sees_replies:  # else on_reply shows it as published
                render = partial(
                    self._reply_frame, trigger.broker_key, event, outcome.reply, stamped
                )
                self._offer(targets, render)

    def on_reply(self, broker: str, request: Event, reply: Event) -> None:
        """A reply as the dispatcher publishes it (after every reply hook has stamped it)."""
        if not self.clients:
            return
        targets = self._targets(broker)
        if targets:
            self._offer(targets, partial(self._reply_frame, broker, request, reply, reply))

    def _targets(self, broker: str) -> list[Client]:
        return [c for c in self.clients if c.broker is None or c.broker == broker]

    def _offer(self, targets: list[Client], render: Callable[[], bytes]) -> None:
        """Queue one frame for each client with room; count a drop for the others.

        A full queue is checked rather than caught: on a busy mesh with a slow watcher most
        frames are dropped, and raising QueueFull for each cost more than the request itself.
        """
        if self.closed:
            return
        lazy: LazyFrame | None = None
        for client in targets:
            queue = client.queue
            if queue.full():
                client.dropped += 1
                self.dropped += 1
                continue
            if lazy is None:
                lazy = LazyFrame(render)
            queue.put_nowait(lazy)

    def _delivery_frame(
        self, trigger: TriggerSpec, event: Event, outcome: Outcome, at: float
    ) -> bytes:
        reply = outcome.reply
        record = {
            "broker": trigger.broker_key,
            "id": event.id,
            "trigger": trigger.key,
            "subscriber": trigger.subscriber.describe(),
            "ok": outcome.ok,
            "status": outcome.status,
            "code": delivery_code(outcome),
            "error": outcome.error,
            "retryable": not outcome.ok and outcome.retryable,
            "retries": trigger.delivery.retry,
            "reply": {"id": reply.id, "type": reply.type} if reply else None,
            "at": at,
        }
        return frame("delivery", record)

    def _accepted_frame(self, broker: str, event: Event) -> bytes:
        return frame("accepted", self._accepted(broker, event))

    def _reply_frame(
        self, broker: str, request: Event, reply: Event, published: Event | None
    ) -> bytes:
        """A reply; `published` is None when the TTL ran out and the reply was dropped."""
        record = self._accepted(broker, published or reply)
        record["reply_to"] = request.id
        if published is None:
            record["triggers"] = []
            record["dropped"] = "knativebrokerttl exhausted"
        return frame("accepted", record)

    def _accepted(self, broker: str, event: Event) -> dict[str, Any]:
        matched = [t.key for t in self._triggers.get(broker, ()) if t.filter.matches(event)]
        record: dict[str, Any] = {
            "broker": broker,
            "id": event.id,
            "type": event.type,
            "source": event.source,
            "subject": event.subject,
            "arrival": event.text(ARRIVAL_ATTRIBUTE),
            "traceparent": event.text("traceparent"),
            "attributes": dict(event.attributes),  # JSON strings, integers and booleans
            "triggers": matched,
            "size": len(event.data or b""),
        }
        if self.payload_limit and event.data is not None:
            record["data"] = _preview(event.data, self.payload_limit)
        return record


def _preview(data: bytes, limit: int) -> str:
    try:
        text = data[:limit].decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(data)} bytes, not UTF-8)"
    return text + ("…" if len(data) > limit else "")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class EventStream(Response):
    """The `text/event-stream` response of one client, ended by a disconnect or `close()`.

    Bare ASGI underneath (rather than StreamingResponse) so the client is unsubscribed the
    moment it goes away, not when a garbage-collected generator gets round to it.
    """

    media_type = "text/event-stream"

    def __init__(self, hub: LiveHub, broker: str | None) -> None:
        super().__init__(
            None,
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            media_type=self.media_type,
        )
        # A stream has no length: drop the `content-length: 0` Response adds for an empty body.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.hub = hub
        self.broker = broker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        client = hub.subscribe(self.broker)
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            opening = b"retry: 2000\n\n" + hub.hello()
            await send({"type": "http.response.body", "body": opening, "more_body": True})
            while True:
                chunk = await _next_chunk(client, gone)
                if chunk is None:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away while we wrote
        finally:
            gone.cancel()
            hub.unsubscribe(client)


async def _next_chunk(client: Client, gone: asyncio.Future[None]) -> bytes | None:
    """What to write next: the frames queued by now (after a short wait that lets a burst
    gather), a keep-alive after a quiet `HEARTBEAT`, or None when the stream ends."""
    if client.queue.empty():
        getter = asyncio.ensure_future(client.queue.get())
        waiting: set[asyncio.Future[Any]] = {getter, gone}
        done, _ = await asyncio.wait(
            waiting, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
        )
        if getter not in done:
            getter.cancel()
            return None if gone in done else KEEPALIVE
        first = getter.result()
    else:
        first = client.queue.get_nowait()
    if first is not None:
        await asyncio.sleep(FLUSH_INTERVAL)
    parts: list[bytes] = []
    if client.dropped > client.reported:
        parts.append(frame("dropped", {"count": client.dropped - client.reported}))
        client.reported = client.dropped
    item = first
    while item is not None:
        parts.append(item.render())
        if len(parts) >= BATCH or client.queue.empty():
            break
        item = client.queue.get_nowait()
    if item is None and not parts:
        return None
    if item is None:  # closed after these frames: write them, end on the next call
        client.queue.put_nowait(None)
    return b"".join(parts)


class LiveAwareServer(uvicorn.Server):
    """uvicorn's Server, ending live-view streams when shutdown starts.

    uvicorn waits for open responses before it runs the lifespan shutdown, and an event stream
    never finishes by itself: without this, a browser left on /ui would hold every stop for
    the whole graceful period.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        observability = getattr(getattr(self.config.app, "state", None), "observability", None)
        if observability is not None:
            observability.live.close()
        await super().shutdown(sockets)
