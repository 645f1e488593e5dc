"""Prometheus metrics, on a registry per app.

Why a registry per app and not prometheus-client's global one: tests (and embedders) build many
apps in one process, and a global registry would refuse the second app's metrics or mix the
counts of both.

Where the numbers come from, chosen to keep the ingress hot path cheap:
- ingress requests and their latency: the HTTP observer (observability/observer.py), once
  per request, labelled by broker (`unknown` for brokers that do not exist, so a scanner cannot
  create unbounded label values) and status;
- accepted events: the ingress `accepted_listeners`;
- delivery attempts and the latency from arrival to the end of each attempt: the dispatcher's
  `listeners`; the time of the HTTP request alone: `TimedTransport` around the transport;
- retries, dead letters, replies and TTL drops: read from the dispatcher's `Stats` when
  scraped, so they cost nothing per event.

The per-event families are plain numbers (`Counts`, `Timings`) turned into metric families at
scrape time: prometheus-client's own Counter takes a lock per `inc`, which on the ingress path
cost more than the rest of observability together.

Latency buckets run from 0.5 ms: the embedded mesh answers in about a millisecond, and a
histogram starting at 5 ms (prometheus-client's default) would put everything in one bucket.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from brokers.datafilter import stats as data_filter_stats
from brokers.delivery import Destination
from brokers.errors import DeliveryTimeout
from brokers.event import Event
from brokers.knative import ARRIVAL_ATTRIBUTE, dest_uri
from brokers.transport import Outcome, Response, Transport
from brokers.triggers import TriggerSpec

if TYPE_CHECKING:
    from gateway.mesh import Mesh

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
UNKNOWN: Final = "unknown"
INGRESS_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
DELIVERY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def delivery_code(outcome: Outcome) -> str:
    """The `code` label: the HTTP status, or `timeout` / `error` when there was no answer."""
    if outcome.status:
        return str(outcome.status)
    return "timeout" if isinstance(outcome.fault, DeliveryTimeout) else "error"


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


class Counts:
    """A counter family kept as plain numbers by label values.

    Why not prometheus-client's Counter on the hot paths: each `inc` takes a lock and checks
    its labels, which costs more than everything else observability adds to an ingress
    request. The gateway runs on one event loop thread, so plain dict arithmetic is safe; the
    values become metric families when scraped (in the same thread).
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.values: dict[tuple[Any, ...], float] = {}

    def inc(self, key: tuple[Any, ...], by: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + by

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for key, value in sorted(self.values.items(), key=_by_text):
            family.add_metric([str(part) for part in key], value)
        return family


class Timings:
    """A histogram family kept as plain numbers (see Counts for why)."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], bounds: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.bounds = tuple(bounds)
        self.series: dict[tuple[Any, ...], list[float]] = {}  # per bucket, then the sum

    def observe(self, key: tuple[Any, ...], seconds: float) -> None:
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, seconds)] += 1
        series[-1] += seconds

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        edges = [repr(float(b)) for b in self.bounds] + ["+Inf"]  # as Prometheus writes them
        for key, series in sorted(self.series.items(), key=_by_text):
            buckets = list(zip(edges, accumulate(series[:-1]), strict=True))
            family.add_metric([str(part) for part in key], buckets, series[-1])
        return family


def _by_text(item: tuple[tuple[Any, ...], Any]) -> tuple[str, ...]:
    return tuple(str(part) for part in item[0])


class Metrics:
    """The mesh's metrics; `render()` is the body of `GET /metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.mesh: Mesh | None = None  # set by attach(); read when scraped
        self.ingress_requests = Counts(
            "cemesh_ingress_requests",
            "Broker ingress requests, by broker and HTTP status",
            ["broker", "status"],
        )
        self.ingress_events = Counts(
            "cemesh_ingress_events", "Events accepted by broker ingress", ["broker"]
        )
        self.ingress_duration = Timings(
            "cemesh_ingress_request_duration_seconds",
            "Broker ingress request time, from the first byte read to the response sent",
            ["broker"],
            INGRESS_BUCKETS,
        )
        self.deliveries = Counts(
            "cemesh_deliveries",
            "Delivery attempts, by trigger, outcome (success|failure) and code (HTTP status, "
            "timeout or error)",
            ["trigger", "outcome", "code"],
        )
        self.delivery_latency = Timings(
            "cemesh_delivery_latency_seconds",
            "From the event's arrival (knativearrivaltime) to the end of a delivery attempt; "
            "includes queueing and retry backoff",
            ["trigger"],
            DELIVERY_BUCKETS,
        )
        self.delivery_duration = Timings(
            "cemesh_delivery_request_duration_seconds",
            "Time of one delivery request to a subscriber or dead-letter sink",
            ["destination"],
            DELIVERY_BUCKETS,
        )
        self.request_reply = Counts(
            "cemesh_request_reply",
            "Request-reply calls, by broker and outcome (replied|timeout|rejected|error)",
            ["broker", "outcome"],
        )
        self.request_reply_duration = Timings(
            "cemesh_request_reply_duration_seconds",
            "Request-reply time, from the request to its reply or timeout",
            ["broker"],
            DELIVERY_BUCKETS,
        )
        self.function_calls = Counts(
            "cemesh_function_calls",
            "Direct function calls (POST /functions/{name}), by function and HTTP status",
            ["function", "status"],
        )
        self.families: list[Counts | Timings] = [
            self.ingress_requests,
            self.ingress_events,
            self.ingress_duration,
            self.deliveries,
            self.delivery_latency,
            self.delivery_duration,
            self.request_reply,
            self.request_reply_duration,
            self.function_calls,
        ]
        self.live: Any = None  # the LiveHub, read when scraped
        self.registry.register(_MeshCollector(self))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_ingress(self, broker: str, status: int, seconds: float) -> None:
        """One ingress request (the HTTP observer); broker is `unknown` unless configured."""
        self.ingress_requests.inc((broker, status))
        self.ingress_duration.observe((broker,), seconds)

    def on_accepted(self, broker: str, events: list[Event]) -> None:
        """Ingress `accepted_listeners` hook."""
        self.ingress_events.inc((broker,), len(events))

    def on_delivery(self, trigger: TriggerSpec, event: Event, outcome: Outcome) -> None:
        """Dispatcher `listeners` hook, after every delivery attempt."""
        outcome_label = "success" if outcome.ok else "failure"
        self.deliveries.inc((trigger.key, outcome_label, delivery_code(outcome)))
        elapsed = seconds_since(event.text(ARRIVAL_ATTRIBUTE), time.time())
        if elapsed is not None:
            self.delivery_latency.observe((trigger.key,), elapsed)

    def observe_request_reply(self, broker: str, status: int, seconds: float) -> None:
        if status == 200:
            outcome = "replied"
        elif status == 504:
            outcome = "timeout"
        elif 400 <= status < 500:
            outcome = "rejected"
        else:
            outcome = "error"
        self.request_reply.inc((broker, outcome))
        self.request_reply_duration.observe((broker,), seconds)

    def observe_function_call(self, function: str, status: int) -> None:
        self.function_calls.inc((function, status))


class _MeshCollector(Collector):
    """Counts the dispatcher already keeps, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # names vary with the mesh; no duplicate check needed

    def collect(self) -> Iterable[Metric]:
        for family in self.metrics.families:
            yield family.collect()
        live = self.metrics.live
        if live is not None:
            yield GaugeMetricFamily(
                "cemesh_live_clients", "Clients connected to GET /events/stream", len(live.clients)
            )
            yield CounterMetricFamily(
                "cemesh_live_dropped_events",
                "Live-view frames dropped because a client read too slowly (or over its rate)",
                value=live.dropped,
            )
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
        yield CounterMetricFamily(
            "cemesh_data_filter_budget_exceeded",
            "data filter evaluations CEL stopped at its iteration budget (counted as no match)",
            value=data_filter_stats.budget_exceeded,
        )
        reloads = CounterMetricFamily(
            "cemesh_config_reloads",
            "Configuration changes while running: applied, or refused (the previous one serves)",
            labels=["result"],
        )
        for result, count in sorted(mesh.reconciler.counts.items()):
            reloads.add_metric([result], count)
        yield reloads


class TimedTransport:
    """A Transport that times each request for `cemesh_delivery_request_duration_seconds`."""

    def __init__(self, inner: Transport, metrics: Metrics) -> None:
        self.inner = inner
        self._timings = metrics.delivery_duration
        self._labels: dict[Destination, tuple[str]] = {}

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
            label = self._labels.get(destination)
            if label is None:
                label = self._labels[destination] = (destination_label(destination),)
            self._timings.observe(label, time.perf_counter() - start)
