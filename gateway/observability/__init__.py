"""What operators see: Prometheus metrics, W3C trace context (optional OTel spans), the live
view (SSE and /ui), logging set-up, and the one call that wires them into an app.

Public names are re-exported lazily (gateway/lazy.py).
"""

from __future__ import annotations

from gateway.lazy import exports

_EXPORTS: dict[str, str] = {
    "Client": "live",
    "Counts": "metrics",
    "EventStream": "live",
    "HttpObserver": "observer",
    "JsonFormatter": "logs",
    "LazyFrame": "live",
    "LiveAwareServer": "live",
    "LiveHub": "live",
    "Metrics": "metrics",
    "Observability": "observer",
    "ObservabilityConfig": "observer",
    "OtelSpans": "tracing",
    "RequestTrace": "tracing",
    "TextFormatter": "logs",
    "TimedTransport": "metrics",
    "Timings": "metrics",
    "TraceContext": "tracing",
    "TraceContextFilter": "tracing",
    "TracedTransport": "tracing",
    "Tracing": "tracing",
    "configure": "logs",
    "delivery_code": "metrics",
    "destination_label": "metrics",
    "frame": "live",
    "install_observability": "observer",
    "new_trace": "tracing",
    "otel_spans": "tracing",
    "parse_traceparent": "tracing",
    "reply_traceparent": "tracing",
    "seconds_since": "metrics",
    "stamp_reply": "tracing",
    "trace_id_of": "tracing",
    "ui_page": "live",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports(__name__, _EXPORTS)
