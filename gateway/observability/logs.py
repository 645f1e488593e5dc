"""Logging, configured once at the edge: text locally, JSON in a cluster.

Records carry `ce_id`, `ce_type`, `ce_source`, `trigger` and `traceparent` when the caller
binds them with `extra=`; payloads are never logged.
"""

from __future__ import annotations

import json
import logging
from typing import Final

from gateway.observability.tracing import TraceContextFilter

BOUND: Final = (
    "ce_id",
    "ce_type",
    "ce_source",
    "trigger",
    "traceparent",
    "trace_id",
    "error",
    "attempt",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update({k: getattr(record, k) for k in BOUND if hasattr(record, k)})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        bound = " ".join(f"{k}={getattr(record, k)}" for k in BOUND if hasattr(record, k))
        return f"{line} {bound}" if bound else line


def configure(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
