"""Prometheus metrics, on a registry per app.

Why a registry per app and not prometheus-client's global one: tests (and embedders) build many
apps in one process, and a global registry would refuse the second app's metrics or mix the
counts of both.

Where the numbers come from, chosen to keep the ingress hot path cheap:
- ingress requests and their latency: the HTTP observer (gateway/observability.py), once per
  request, labelled by broker (`unknown` for brokers that do not exist, so a scanner cannot
  create unbounded label values) and status;
- accepted events: the ingress `accepted_listeners`;
- delivery attempts and the latency from arrival to the end of each attempt: the dispatcher's
  `listeners`; the time of the HTTP request alone: `TimedTransport` around the transport;
- retries, dead letters, replies and TTL drops: read from the dispatcher's `Stats` when
  scraped, so they cost nothing per event;
- queue depth: when scraped, from the broker's `queue_depths()` if it has one, or from a
  callback set on `Metrics.queue_depths`.

Latency buckets run from 0.5 ms: the embedded mesh answers in about a millisecond, and a
histogram starting at 5 ms (prometheus-client's default) would put everything in one bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from brokers.delivery import Destination
from brokers.dispatch import ARRIVAL_ATTRIBUTE, Outcome, Response, Transport, dest_uri
from brokers.event import Event
from brokers.triggers import TriggerSpec

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
UNKNOWN: Final = "unknown"
INGRESS_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
DELIVERY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@runtime_checkable
class QueueDepths(Protocol):
    """What a broker may offer for `cemesh_queue_depth`: messages waiting, by trigger key.

    Called when Prometheus scrapes, synchronously: a broker that must ask a server (RabbitMQ)
    returns the figures it last fetched.
    """

    def queue_depths(self) -> Mapping[str, int]: ...


def delivery_code(outcome: Outcome) -> str:
    """The `code` label: the HTTP status, or `timeout` / `error` when there was no answer."""
    if outcome.status:
        return str(outcome.status)
    return "timeout" if outcome.error.startswith("timed out") else "error"


def destination_label(destination: Destination) -> str:
    """A subscriber URI fit for a label: no credentials, query or fragment."""
    uri = dest_uri(destination)
    if destination.function is not None:
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def seconds_since(rfc3339: str | None, now: float) -> float | None:
    if not rfc3339:
        return None
    try:
        return max(0.0, now - datetime.fromisoformat(rfc3339).timestamp())
    except ValueError:
        return None


class Metrics:
    """The mesh's metrics; `render()` is the body of `GET /metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.mesh: Any = None  # set by attach(); read when scraped
        self.queue_depths: Callable[[], Mapping[str, int]] | None = None
        r = self.registry
        self.ingress_requests = Counter(
            "cemesh_ingress_requests",
            "Broker ingress requests, by broker and HTTP status",
            ["broker", "status"],
            registry=r,
        )
        self.ingress_events = Counter(
            "cemesh_ingress_events", "Events accepted by broker ingress", ["broker"], registry=r
        )
        self.ingress_duration = Histogram(
            "cemesh_ingress_request_duration_seconds",
            "Broker ingress request time, from the first byte read to the response sent",
            ["broker"],
            buckets=INGRESS_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            "cemesh_deliveries",
            "Delivery attempts, by trigger, outcome (success|failure) and code (HTTP status, "
            "timeout or error)",
            ["trigger", "outcome", "code"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "cemesh_delivery_latency_seconds",
            "From the event's arrival (knativearrivaltime) to the end of a delivery attempt; "
            "includes queueing and retry backoff",
            ["trigger"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.delivery_duration = Histogram(
            "cemesh_delivery_request_duration_seconds",
            "Time of one delivery request to a subscriber or dead-letter sink",
            ["destination"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.request_reply = Counter(
            "cemesh_request_reply",
            "Request-reply calls, by broker and outcome (replied|timeout|rejected|error)",
            ["broker", "outcome"],
            registry=r,
        )
        self.request_reply_duration = Histogram(
            "cemesh_request_reply_duration_seconds",
            "Request-reply time, from the request to its reply or timeout",
            ["broker"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.function_calls = Counter(
            "cemesh_function_calls",
            "Direct function calls (POST /functions/{name}), by function and HTTP status",
            ["function", "status"],
            registry=r,
        )
        self.live_clients = Gauge(
            "cemesh_live_clients", "Clients connected to GET /events/stream", registry=r
        )
        self.live_dropped = Counter(
            "cemesh_live_dropped_events",
            "Live-view messages dropped because a client read too slowly",
            registry=r,
        )
        r.register(_MeshCollector(self))
        self._ingress: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._delivery: dict[tuple[str, bool, str], tuple[Any, Any]] = {}
        self._events: dict[str, Any] = {}

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_ingress(self, broker: str, status: int, seconds: float) -> None:
        """One ingress request (the HTTP observer); broker is `unknown` unless configured."""
        key = (broker, status)
        children = self._ingress.get(key)
        if children is None:
            children = (
                self.ingress_requests.labels(broker, str(status)),
                self.ingress_duration.labels(broker),
            )
            self._ingress[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def on_accepted(self, broker: str, events: list[Event]) -> None:
        """Ingress `accepted_listeners` hook."""
        child = self._events.get(broker)
        if child is None:
            child = self._events[broker] = self.ingress_events.labels(broker)
        child.inc(len(events))

    def on_delivery(self, trigger: TriggerSpec, event: Event, outcome: Outcome) -> None:
        """Dispatcher `listeners` hook, after every delivery attempt."""
        code = delivery_code(outcome)
        key = (trigger.key, outcome.ok, code)
        children = self._delivery.get(key)
        if children is None:
            outcome_label = "success" if outcome.ok else "failure"
            children = (
                self.deliveries.labels(trigger.key, outcome_label, code),
                self.delivery_latency.labels(trigger.key),
            )
            self._delivery[key] = children
        children[0].inc()
        elapsed = seconds_since(event.text(ARRIVAL_ATTRIBUTE), time.time())
        if elapsed is not None:
            children[1].observe(elapsed)

    def observe_request_reply(self, broker: str, status: int, seconds: float) -> None:
        if status == 200:
            outcome = "replied"
        elif status == 504:
            outcome = "timeout"
        elif 400 <= status < 500:
            outcome = "rejected"
        else:
            outcome = "error"
        self.request_reply.labels(broker, outcome).inc()
        self.request_reply_duration.labels(broker).observe(seconds)

    def observe_function_call(self, function: str, status: int) -> None:
        self.function_calls.labels(function, str(status)).inc()


class _MeshCollector(Collector):
    """Counts the dispatcher already keeps, and queue depths, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # names vary with the mesh; no duplicate check needed

    def collect(self) -> Iterable[Metric]:
        mesh = self.metrics.mesh
        if mesh is None:
            return
        stats = mesh.dispatcher.stats
        retries = CounterMetricFamily(
            "cemesh_delivery_retries",
            "Delivery attempts that failed and were scheduled again",
            labels=["trigger"],
        )
        dead = CounterMetricFamily(
            "cemesh_dead_letters",
            "Events that exhausted their retries (sent to the dead-letter sink or kept)",
            labels=["trigger"],
        )
        for trigger in mesh.config.triggers:
            retries.add_metric([trigger.key], stats.by_trigger.get((trigger.key, "retried"), 0))
            dead.add_metric([trigger.key], stats.by_trigger.get((trigger.key, "dead_lettered"), 0))
        yield retries
        yield dead
        yield CounterMetricFamily(
            "cemesh_replies", "Replies sent back into their broker", value=stats.replies
        )
        yield CounterMetricFamily(
            "cemesh_ttl_dropped",
            "Replies dropped because knativebrokerttl was exhausted",
            value=stats.ttl_dropped,
        )
        depths = self._depths(mesh)
        if depths is not None:
            gauge = GaugeMetricFamily(
                "cemesh_queue_depth", "Messages waiting in a trigger's queue", labels=["trigger"]
            )
            for key, depth in sorted(depths.items()):
                gauge.add_metric([key], depth)
            yield gauge

    def _depths(self, mesh: Any) -> Mapping[str, int] | None:
        if self.metrics.queue_depths is not None:
            return self.metrics.queue_depths()
        if isinstance(mesh.broker, QueueDepths):
            return mesh.broker.queue_depths()
        return None


class TimedTransport:
    """A Transport that times each request for `cemesh_delivery_request_duration_seconds`."""

    def __init__(self, inner: Transport, metrics: Metrics) -> None:
        self.inner = inner
        self._histogram = metrics.delivery_duration
        self._children: dict[Destination, Any] = {}

    async def post(
        self,
        destination: Destination,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> Response:
        start = time.perf_counter()
        try:
            return await self.inner.post(destination, headers, body, timeout)
        finally:
            child = self._children.get(destination)
            if child is None:
                child = self._histogram.labels(destination_label(destination))
                self._children[destination] = child
            child.observe(time.perf_counter() - start)
