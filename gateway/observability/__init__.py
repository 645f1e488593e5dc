"""What operators see: Prometheus metrics, W3C trace context (optional OTel spans), the live
view (SSE and /ui), logging set-up, and the one call that wires them into an app.

Public names are re-exported lazily (PEP 562), so importing one module of the package does
not import the others (no import cycles through this file).
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
