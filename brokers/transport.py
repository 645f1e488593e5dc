"""The delivery port: one HTTP request to a destination (`Transport`), what an attempt came to
(`Outcome`), and `attempt()`, which sends an event the way Knative delivers (binary mode,
`Prefer: reply`) and reads a reply or a Retry-After from the answer.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from brokers.codec import from_http, to_binary
from brokers.delivery import Destination
from brokers.errors import (
    DeliveryError,
    DeliveryRejected,
    InvalidEvent,
    InvalidReply,
)
from brokers.event import Event

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)

RETRYABLE: Final = frozenset({404, 408, 409, 429})


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one HTTP request to a destination.

    Raises `DeliveryError` (`SubscriberUnreachable`, `DeliveryTimeout`) when there is no answer:
    an implementation translates its HTTP library's exceptions at its own boundary, so nothing
    above it sees aiohttp's, httpx's or the OS's.
    """

    async def post(
        self,
        destination: Destination,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> Response: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt came to; `fault` is why it failed (None when `ok`)."""

    ok: bool
    status: int = 0
    reply: Event | None = None
    retry_after: float | None = None
    fault: DeliveryError | None = None
    body: bytes = b""

    @property
    def error(self) -> str:
        """The fault as text (logs, and `knativeerrordata` when the answer had no body)."""
        return str(self.fault) if self.fault is not None else ""

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status in RETRYABLE or self.status >= 500


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def delivery_request(event: Event) -> tuple[list[tuple[str, str]], bytes]:
    headers, body = to_binary(event)
    headers.append(("prefer", "reply"))
    traceparent = event.text("traceparent")
    if traceparent:
        headers.append(("traceparent", traceparent))
    return headers, body


async def attempt(
    transport: Transport, destination: Destination, event: Event, timeout: float
) -> Outcome:
    """One delivery attempt, turned into an Outcome (never raises for delivery faults)."""
    headers, body = delivery_request(event)
    try:
        response = await transport.post(destination, headers, body, timeout)
    except DeliveryError as exc:
        return Outcome(False, fault=exc)
    status = response.status
    if not 200 <= status < 300:
        delay = None
        if status in (429, 503):
            delay = retry_after(response.headers.get("retry-after"))
        rejected = DeliveryRejected(status)
        return Outcome(False, status, retry_after=delay, fault=rejected, body=response.body)
    if status == 202 or (not response.body and "ce-specversion" not in response.headers):
        return Outcome(
            True, status
        )  # a 202 body is never a reply; no body and no ce- headers: none
    try:
        mode, events = from_http(response.headers, response.body)
    except InvalidEvent as exc:
        fault = InvalidReply(f"reply is not a CloudEvent: {exc}")
        return Outcome(False, 502, fault=fault, body=response.body)
    if mode == "batch" or len(events) != 1:
        fault = InvalidReply("a reply must be a single event")
        return Outcome(False, 502, fault=fault, body=response.body)
    return Outcome(True, status, reply=events[0])
