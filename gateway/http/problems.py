"""RFC 9457 problem details: the one place where errors become HTTP responses.

Gateway code raises `HTTPProblem` for what is about HTTP itself (an unknown route object, a
missing header, a body too large) and lets every typed error of `brokers` and `cdevents`
reach `from_exception`, either through the app's handlers or, where a route wants the answer
without the traceback of an unexpected error, as `raise from_exception(exc) from None`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from brokers.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    DeliveryError,
    DeliveryTimeout,
    InvalidEvent,
    UnknownBroker,
    UnsupportedContentType,
)
from brokers.state import StateUnavailable
from cdevents.errors import PayloadError

PROBLEM_JSON: Final = "application/problem+json"
TYPE_BASE: Final = "https://cemesh.dev/problems/"


class HTTPProblem(Exception):
    """Raised by gateway code for a response that is not a broker error."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
        slug: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})
        self.slug = slug or title.lower().replace(" ", "-")


def not_ready(detail: str) -> HTTPProblem:
    """503 while the mesh is starting or stopping: the client may retry in a second."""
    return HTTPProblem(503, "Not Ready", detail, headers={"retry-after": "1"})


def from_exception(exc: Exception) -> HTTPProblem:
    """Map every known error to its status (DESIGN section 4: 5xx only when not accepted)."""
    if isinstance(exc, HTTPProblem):
        return exc
    if isinstance(exc, UnsupportedContentType):
        return HTTPProblem(415, "Unsupported Media Type", exc.message, field=exc.field)
    if isinstance(exc, InvalidEvent):
        return HTTPProblem(
            400, "Invalid CloudEvent", exc.message, field=exc.field, slug="invalid-event"
        )
    if isinstance(exc, UnknownBroker):
        return HTTPProblem(404, "Unknown Broker", str(exc))
    if isinstance(exc, BrokerUnavailable):
        retry = max(1, round(exc.retry_after))
        return HTTPProblem(
            503,
            "Broker Unavailable",
            f"{exc}; the event was not accepted",
            headers={"retry-after": str(retry)},
        )
    if isinstance(exc, StateUnavailable):
        return HTTPProblem(503, "State Unavailable", str(exc), headers={"retry-after": "1"})
    if isinstance(exc, DeliveryTimeout):
        return HTTPProblem(504, "Delivery Timeout", str(exc), field="timeout")
    if isinstance(exc, DeliveryError):
        return HTTPProblem(502, "Destination Unreachable", str(exc))
    if isinstance(exc, ConfigError):
        return HTTPProblem(500, "Configuration Error", str(exc))
    if isinstance(exc, BrokerError):
        return HTTPProblem(500, "Broker Error", str(exc))
    if isinstance(exc, PayloadError):
        return HTTPProblem(400, "Invalid Payload", exc.message, field=exc.field)
    return HTTPProblem(500, "Internal Error", "unexpected error; see the gateway log")


def body_of(problem: HTTPProblem, instance: str | None = None) -> bytes:
    doc: dict[str, Any] = {
        "type": TYPE_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.field:
        doc["field"] = problem.field
    if instance:
        doc["instance"] = instance
    return json.dumps(doc).encode()


def asgi_headers(problem: HTTPProblem, body: bytes) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers.extend((k.encode(), v.encode()) for k, v in problem.headers.items())
    return headers
