"""W3C trace context through the mesh, and OpenTelemetry spans when an exporter is configured.

Why the CloudEvents `traceparent` extension and not only the HTTP header: an event outlives the
request that brought it (it sits in a queue, is retried, is delivered to several triggers, is
answered by a reply), so the trace must travel *in the event*, as the CloudEvents
distributed-tracing extension says. The flow:

- ingress (`Tracing.stamp`, called by the ingress before publishing): an event that has no
  `traceparent` extension gets the request's HTTP `traceparent` (and `tracestate`); with neither,
  a new trace is started when `trace_start` is set or spans are exported;
- delivery: brokers/dispatch.py copies the extension into the delivery's HTTP `traceparent`;
- replies (`stamp_reply`, a dispatcher reply hook): the reply inherits the request's trace id
  with a new span id (the delivery span's, when spans are recorded), unless the function set
  its own. A hook rather than a call inside
  brokers/dispatch.py, so the broker layer never imports the gateway.

OpenTelemetry is optional: without `opentelemetry-sdk` (or without an endpoint) nothing here
imports it and the cost is a header lookup. With an OTLP endpoint (`CEMESH_OTEL_ENDPOINT` or the
standard `OTEL_EXPORTER_OTLP_ENDPOINT`) and `pip install opentelemetry-sdk
opentelemetry-exporter-otlp-proto-http`, the gateway exports an ingress span per request (its
span id becomes the events' parent) and a delivery span per attempt (`TracedTransport`). The
provider is per app, never the global one, so tests can build many apps.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from brokers.delivery import Destination
from brokers.event import Event
from brokers.knative import dest_uri
from brokers.transport import Response, Transport

if TYPE_CHECKING:  # the SDK is optional: without it these names are Any to mypy
    from opentelemetry.sdk.trace import (  # type: ignore[import-not-found,unused-ignore]
        SpanProcessor,
        TracerProvider,
    )
    from opentelemetry.trace import Span

log = logging.getLogger(__name__)

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
# version-traceid-parentid-flags, lower-case hex (W3C Trace Context level 1, section 3.2).
_TRACEPARENT: Final = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<span_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?"
)
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16


class TraceContext(NamedTuple):
    """One parsed `traceparent`; always version 00 when written back. (A NamedTuple: it is
    made on the ingress path, and builds several times faster than a frozen dataclass.)"""

    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """The same trace with a fresh span id (a new hop, nothing recorded)."""
        return TraceContext(self.trace_id, _new_span_id(), self.flags)


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The trace context of a `traceparent` value, or None when it is absent or invalid.

    Invalid per W3C: version ff, all-zero ids, upper-case hex, or trailing data on version 00
    (later versions may append fields after a dash, which are ignored).
    """
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, flags)


def new_trace(sampled: bool = True) -> TraceContext:
    return TraceContext(secrets.token_hex(16), _new_span_id(), "01" if sampled else "00")


def _new_span_id() -> str:
    span_id = secrets.token_hex(8)
    return span_id if span_id != _ZERO_SPAN else "0000000000000001"


def trace_id_of(traceparent: str | None) -> str | None:
    context = parse_traceparent(traceparent)
    return context.trace_id if context else None


def reply_traceparent(
    request: str | None, reply: str | None, delivery: TraceContext | None = None
) -> str | None:
    """The `traceparent` a reply event should carry.

    A reply keeps a valid traceparent its function set (the function may have traced its own
    work). Otherwise, when the delivery that produced it was recorded as a span, the reply
    hangs under that span; else it continues the request's trace with a new span id. None
    when there is no trace to continue.
    """
    if parse_traceparent(reply) is not None:
        return reply
    parent = parse_traceparent(request)
    if parent is None:
        return None
    if delivery is not None and delivery.trace_id == parent.trace_id:
        return delivery.header()
    return parent.child().header()


# The delivery span of the attempt in flight: set by TracedTransport, read by the reply hook,
# which runs in the same task right after the attempt (a reply can be binary or structured,
# so it cannot be stamped while still HTTP).
last_delivery: ContextVar[TraceContext | None] = ContextVar("cemesh_delivery", default=None)


def stamp_reply(request: Event, reply: Event) -> Event:
    """Dispatcher reply hook: the reply continues the request's trace (`reply_traceparent`)."""
    delivery = last_delivery.get()
    if delivery is not None:
        last_delivery.set(None)
    value = reply_traceparent(request.text(TRACEPARENT), reply.text(TRACEPARENT), delivery)
    if value is None or value == reply.text(TRACEPARENT):
        return reply
    attributes = {**reply.attributes, TRACEPARENT: value}
    state = request.text(TRACESTATE)
    if state and TRACESTATE not in reply.attributes:
        attributes[TRACESTATE] = state
    return Event(attributes, reply.data)


# The trace id of the request being served, for log records (see TraceContextFilter).
current_trace_id: ContextVar[str | None] = ContextVar("cemesh_trace_id", default=None)


class TraceContextFilter(logging.Filter):
    """Adds `trace_id` to log records: from the record's bound `traceparent`, else from the
    request being served. Install it on the handler (observability/logs.py) so every logger
    gets it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            trace_id = trace_id_of(getattr(record, "traceparent", None)) or current_trace_id.get()
            if trace_id is not None:
                record.trace_id = trace_id
        return True


@dataclass(slots=True)
class RequestTrace:
    """What the HTTP observer and `Tracing.stamp` share about the request in flight.

    A mutable holder rather than separate context variables: whatever the ingress sets on it
    is seen by the observer even if a layer in between copied the context.
    """

    started_ns: int = field(default_factory=time.time_ns)
    span: Span | None = None


current_request: ContextVar[RequestTrace | None] = ContextVar("cemesh_request", default=None)


class Tracing:
    """The ingress side of tracing, and the OpenTelemetry spans when they are exported."""

    def __init__(self, *, start_traces: bool = False, spans: OtelSpans | None = None) -> None:
        self.start_traces = start_traces or spans is not None
        self.spans = spans

    def stamp(self, headers: Mapping[str, str], events: Sequence[Event]) -> list[Event]:
        """Give each event lacking a `traceparent` extension the request's trace context.

        `headers` are the request's, with lower-case names. Events that carry their own
        `traceparent` are left untouched, valid or not: the extension is the sender's.
        """
        header = headers.get(TRACEPARENT)
        incoming = parse_traceparent(header) if header is not None else None
        if incoming is None and not self.start_traces:
            return events if isinstance(events, list) else list(events)
        state = headers.get(TRACESTATE) if incoming is not None else None
        if self.spans is not None:
            span = self.spans.start_ingress(incoming, state, events, current_request.get())
            context = self.spans.context_of(span)
        else:
            context = incoming or new_trace()
        value = context.header()
        current_trace_id.set(context.trace_id)
        stamped: list[Event] = []
        for event in events:
            if TRACEPARENT in event.attributes:
                stamped.append(event)
                continue
            attributes = {**event.attributes, TRACEPARENT: value}
            if state and TRACESTATE not in event.attributes:
                attributes[TRACESTATE] = state
            stamped.append(Event(attributes, event.data))
        return stamped

    def end_ingress(self, status: int) -> None:
        """End the request's ingress span (the HTTP observer calls it after the response)."""
        request = current_request.get()
        if self.spans is not None and request is not None and request.span is not None:
            self.spans.end(request.span, status)
            request.span = None

    def shutdown(self) -> None:
        if self.spans is not None:
            self.spans.shutdown()


class OtelSpans:
    """Spans on a private OpenTelemetry TracerProvider (imports the SDK; see `otel_spans`)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.provider = provider
        self.tracer = provider.get_tracer("cemesh.gateway")

    def _parent(self, context: TraceContext | None, state: str | None) -> Any:
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

        if context is None:
            return None
        span_context = SpanContext(
            trace_id=int(context.trace_id, 16),
            span_id=int(context.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(int(context.flags, 16)),
            trace_state=TraceState.from_header([state]) if state else None,
        )
        return self._trace.set_span_in_context(NonRecordingSpan(span_context))

    def start_ingress(
        self,
        parent: TraceContext | None,
        state: str | None,
        events: Sequence[Event],
        request: RequestTrace | None,
    ) -> Span:
        from opentelemetry.trace import SpanKind

        attributes: dict[str, Any] = {"messaging.system": "cemesh", "cemesh.events": len(events)}
        if len(events) == 1:
            attributes.update(_event_attributes(events[0]))
        span = self.tracer.start_span(
            "cemesh ingress",
            context=self._parent(parent, state),
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=request.started_ns if request else None,
        )
        if request is not None:
            if request.span is not None:  # stamped twice in one request: keep the first
                span.end()
                return request.span
            request.span = span
        else:
            span.end()
        return span

    def context_of(self, span: Span) -> TraceContext:
        ctx = span.get_span_context()
        return TraceContext(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", f"{ctx.trace_flags:02x}")

    def start_delivery(self, traceparent: str | None, destination: Destination) -> Span:
        from opentelemetry.trace import SpanKind

        return self.tracer.start_span(
            f"cemesh deliver {dest_uri(destination)}",
            context=self._parent(parse_traceparent(traceparent), None),
            kind=SpanKind.CLIENT,
            attributes={"messaging.system": "cemesh", "server.address": dest_uri(destination)},
        )

    def end(self, span: Span, status: int, error: str = "") -> None:
        from opentelemetry.trace import Status, StatusCode

        if status:
            span.set_attribute("http.response.status_code", status)
        if error or status == 0 or status >= 400:
            span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status}"))
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


def _event_attributes(event: Event) -> dict[str, str]:
    """OpenTelemetry's semantic conventions for CloudEvents."""
    attributes = {
        "cloudevents.event_id": event.id,
        "cloudevents.event_source": event.source,
        "cloudevents.event_type": event.type,
        "cloudevents.event_spec_version": "1.0",
    }
    if event.subject is not None:
        attributes["cloudevents.event_subject"] = event.subject
    return attributes


def otel_spans(endpoint: str | None, *, processor: SpanProcessor | None = None) -> OtelSpans | None:
    """Spans exported to `endpoint` over OTLP/HTTP (or through `processor`, for tests).

    None when no exporter is configured, or when the SDK is not installed (logged once: the
    mesh still runs, with W3C propagation but no spans).
    """
    if not endpoint and processor is None:
        return None
    try:
        from opentelemetry.sdk.resources import (  # type: ignore[import-not-found,unused-ignore]
            Resource,
        )
        from opentelemetry.sdk.trace import (  # type: ignore[import-not-found,unused-ignore]
            TracerProvider,
        )
        from opentelemetry.sdk.trace.export import (  # type: ignore[import-not-found,unused-ignore]
            BatchSpanProcessor,
        )
    except ImportError:
        log.warning(
            "an OpenTelemetry endpoint is configured but opentelemetry-sdk is not installed; "
            "no spans are exported (pip install opentelemetry-sdk "
            "opentelemetry-exporter-otlp-proto-http)"
        )
        return None
    if processor is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            log.warning(
                "opentelemetry-exporter-otlp-proto-http is not installed; no spans are exported"
            )
            return None
        traces_url = endpoint.rstrip("/") + "/v1/traces" if endpoint else None
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url))
    provider = TracerProvider(resource=Resource.create({"service.name": "cemesh"}))
    provider.add_span_processor(processor)
    return OtelSpans(provider)


class TracedTransport:
    """A Transport that records a delivery span per attempt and sends it as the parent.

    The event's `traceparent` extension stays as it was (it names where the event's trace
    started); only the HTTP header carries the delivery span, as W3C propagation expects. The
    span is also left in `last_delivery`, so a reply hangs under the delivery that produced it.
    """

    def __init__(self, inner: Transport, spans: OtelSpans) -> None:
        self.inner = inner
        self.spans = spans

    async def post(
        self,
        destination: Destination,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> Response:
        parent = next((v for k, v in headers if k == TRACEPARENT), None)
        span = self.spans.start_delivery(parent, destination)
        context = self.spans.context_of(span)
        sent = [(k, v) for k, v in headers if k != TRACEPARENT]
        sent.append((TRACEPARENT, context.header()))
        last_delivery.set(None)
        try:
            response = await self.inner.post(destination, sent, body, timeout)
        except BaseException as exc:
            self.spans.end(span, 0, f"{type(exc).__name__}: {exc}")
            raise
        self.spans.end(span, response.status)
        last_delivery.set(context)
        return response
