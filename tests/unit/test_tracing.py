"""W3C trace context: parsing, ingress stamping, replies, log records, optional OTel spans."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from brokers.delivery import Destination
from brokers.event import Event
from brokers.transport import Response
from gateway.observability.tracing import (
    TraceContext,
    TraceContextFilter,
    TracedTransport,
    Tracing,
    current_trace_id,
    new_trace,
    otel_spans,
    parse_traceparent,
    reply_traceparent,
    stamp_reply,
    trace_id_of,
)
from tests.unit.test_dispatch import ScriptedTransport

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
PARENT = f"00-{TRACE}-{SPAN}-01"


def event(**extra: str) -> Event:
    return Event.create({"specversion": "1.0", "id": "e1", "source": "/s", "type": "t", **extra})


@pytest.mark.parametrize(
    "value",
    [
        PARENT,
        f"00-{TRACE}-{SPAN}-00",
        f"01-{TRACE}-{SPAN}-01-future-field",  # later versions may append fields
        f"  {PARENT}  ",
    ],
)
def test_valid_traceparents(value: str) -> None:
    context = parse_traceparent(value)
    assert context is not None
    assert (context.trace_id, context.span_id) == (TRACE, SPAN)
    assert context.header().startswith("00-")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00_{TRACE}_{SPAN}_01",
    ],
)
def test_invalid_traceparents(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_child_keeps_the_trace_with_a_new_span() -> None:
    parent = TraceContext(TRACE, SPAN, "01")
    child = parent.child()
    assert (child.trace_id, child.flags) == (TRACE, "01")
    assert child.span_id != SPAN
    assert parse_traceparent(child.header()) == child


def test_new_trace_is_valid_and_sampled() -> None:
    first, second = new_trace(), new_trace()
    assert parse_traceparent(first.header()) == first
    assert first.sampled
    assert first.trace_id != second.trace_id
    assert not new_trace(sampled=False).sampled


@pytest.fixture(autouse=True)
def _own_trace_id() -> Iterator[None]:
    """Stamping sets the served request's trace id; keep it from leaking between tests."""
    token = current_trace_id.set(None)
    yield
    current_trace_id.reset(token)


def test_ingress_copies_the_http_traceparent_into_events_lacking_one() -> None:
    tracing = Tracing()
    headers = {"traceparent": PARENT, "tracestate": "vendor=1"}
    own = f"00-{'1' * 32}-{'2' * 16}-01"
    plain, carrying = tracing.stamp(headers, [event(), event(traceparent=own)])
    assert plain.get("traceparent") == PARENT
    assert plain.get("tracestate") == "vendor=1"
    assert carrying.get("traceparent") == own  # the sender's extension wins
    assert "tracestate" not in carrying.attributes


def test_ingress_leaves_events_alone_without_trace_context() -> None:
    original = event()
    (same,) = Tracing().stamp({}, [original])
    assert same is original
    (still,) = Tracing().stamp({"traceparent": "not-a-traceparent"}, [original])
    assert "traceparent" not in still.attributes


def test_ingress_starts_a_trace_when_configured() -> None:
    first, second = Tracing(start_traces=True).stamp({}, [event(), event()])
    context = parse_traceparent(first.text("traceparent"))
    assert context is not None
    assert second.text("traceparent") == first.text("traceparent")  # one request, one trace


def test_stamp_sets_the_trace_id_of_the_request_for_logs() -> None:
    token = current_trace_id.set(None)
    try:
        Tracing().stamp({"traceparent": PARENT}, [event()])
        assert current_trace_id.get() == TRACE
    finally:
        current_trace_id.reset(token)


def test_reply_continues_the_request_trace_with_a_new_span() -> None:
    value = reply_traceparent(PARENT, None)
    context = parse_traceparent(value)
    assert context is not None
    assert context.trace_id == TRACE
    assert context.span_id != SPAN


def test_reply_keeps_its_own_valid_traceparent() -> None:
    own = f"00-{'1' * 32}-{'2' * 16}-01"
    assert reply_traceparent(PARENT, own) == own
    assert trace_id_of(reply_traceparent(PARENT, "broken")) == TRACE
    assert reply_traceparent(None, None) is None
    assert reply_traceparent("broken", None) is None


def test_stamp_reply_event() -> None:
    request = event(traceparent=PARENT, tracestate="vendor=1")
    reply = stamp_reply(request, Event.create({**event().attributes, "id": "r1"}))
    assert trace_id_of(reply.text("traceparent")) == TRACE
    assert reply.text("tracestate") == "vendor=1"
    untraced = event()
    assert stamp_reply(untraced, untraced) is untraced


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("cemesh", logging.INFO, __file__, 1, "message", None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_log_records_get_the_trace_id() -> None:
    log_filter = TraceContextFilter()
    bound = _record(traceparent=PARENT)
    assert log_filter.filter(bound)
    assert getattr(bound, "trace_id", None) == TRACE
    token = current_trace_id.set("f" * 32)
    try:
        served = _record()
        log_filter.filter(served)
        assert getattr(served, "trace_id", None) == "f" * 32
    finally:
        current_trace_id.reset(token)
    token = current_trace_id.set(None)  # outside any request
    try:
        unrelated = _record()
        log_filter.filter(unrelated)
        assert not hasattr(unrelated, "trace_id")
    finally:
        current_trace_id.reset(token)


def test_no_spans_without_an_exporter() -> None:
    assert otel_spans(None) is None
    assert otel_spans("") is None


# OpenTelemetry is optional; these run when the SDK is installed.


@dataclass
class Recorder:
    processor: Any
    exporter: Any

    def finished(self) -> Any:
        return self.exporter.get_finished_spans()


@pytest.fixture
def recorder() -> Recorder:
    """An in-memory span exporter and its processor (skips without the optional SDK)."""
    pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk not installed")
    from opentelemetry.sdk.trace.export import (  # type: ignore[import-not-found,unused-ignore]
        SimpleSpanProcessor,
    )
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # type: ignore[import-not-found,unused-ignore]
        InMemorySpanExporter,
    )

    memory = InMemorySpanExporter()
    return Recorder(SimpleSpanProcessor(memory), memory)


def test_ingress_span_becomes_the_events_parent(recorder: Recorder) -> None:
    spans = otel_spans(None, processor=recorder.processor)
    assert spans is not None
    tracing = Tracing(spans=spans)
    (stamped,) = tracing.stamp({"traceparent": PARENT}, [event()])
    context = parse_traceparent(stamped.text("traceparent"))
    assert context is not None
    assert context.trace_id == TRACE
    assert context.span_id != SPAN  # the ingress span, child of the caller's
    (span,) = recorder.finished()
    assert span.parent.span_id == int(SPAN, 16)
    assert span.context.span_id == int(context.span_id, 16)
    assert span.attributes["cloudevents.event_id"] == "e1"
    tracing.shutdown()


async def test_delivery_span_is_sent_as_parent_and_given_to_the_reply(recorder: Recorder) -> None:
    spans = otel_spans(None, processor=recorder.processor)
    assert spans is not None
    reply_headers = {"ce-specversion": "1.0", "ce-id": "r", "ce-source": "/f", "ce-type": "t"}
    answer = Response(200, reply_headers, b"")
    inner = ScriptedTransport({"http://sink": [answer]})
    transport = TracedTransport(inner, spans)
    response = await transport.post(
        Destination(uri="http://sink"), [("traceparent", PARENT), ("ce-id", "e1")], b"", 1.0
    )
    ((_, _, sent, _),) = inner.calls
    header = sent["traceparent"]
    (span,) = recorder.finished()
    assert header == f"00-{TRACE}-{span.context.span_id:016x}-01"
    assert span.parent.span_id == int(SPAN, 16)
    assert span.attributes["http.response.status_code"] == 200
    assert response is answer
    request = event(traceparent=PARENT)
    reply = stamp_reply(request, Event.create({**event().attributes, "id": "r"}))
    assert reply.text("traceparent") == header  # the reply hangs under the delivery span
    assert stamp_reply(request, event()).text("traceparent") != header  # used once
    spans.shutdown()


@pytest.mark.parametrize(
    "missing", ["opentelemetry.sdk.resources", "opentelemetry.exporter.otlp.proto.http"]
)
def test_a_configured_endpoint_without_the_sdk_warns_and_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # what an uninstalled package looks like
    monkeypatch.setitem(sys.modules, missing + ".trace_exporter", None)
    with caplog.at_level(logging.WARNING, logger="gateway.observability.tracing"):
        assert otel_spans("http://collector:4318") is None
    assert "not installed" in caplog.text
    (stamped,) = Tracing(spans=None).stamp({"traceparent": PARENT}, [event()])
    assert stamped.text("traceparent") == PARENT  # propagation works without OpenTelemetry
