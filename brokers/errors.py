"""Errors of the broker layer.

One root (`BrokerError`) so the gateway can map the whole family to HTTP in one place.
`InvalidEvent` carries the attribute at fault because every 400 must name it (RFC 9457
problem details with a `field` member).
"""

from __future__ import annotations


class BrokerError(Exception):
    """Root of every error raised by `brokers`."""


class InvalidEvent(BrokerError):
    """The bytes or attributes do not form a valid CloudEvent."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UnsupportedContentType(InvalidEvent):
    """The HTTP content type cannot carry a CloudEvent we can read (415)."""


class UnknownBroker(BrokerError):
    """No broker of that namespace and name is configured (404)."""


class BrokerUnavailable(BrokerError):
    """The event could not be durably accepted right now; the client may retry (503)."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(BrokerError):
    """A configuration file or object cannot be used. Its message is one line."""

    def __init__(self, file: str, obj: str | None, reason: str) -> None:
        where = f"{file}: {obj}" if obj else file
        super().__init__(f"{where}: {reason}")
        self.file = file
        self.obj = obj
        self.reason = reason


class DeliveryError(BrokerError):
    """A delivery request (to a subscriber, a dead-letter sink or a function) failed.

    Transports raise the two without an HTTP answer (`SubscriberUnreachable`,
    `DeliveryTimeout`), translated from their HTTP library at the transport boundary;
    `brokers.dispatch.attempt` adds the two with one (`DeliveryRejected`, `InvalidReply`) and
    carries the error in its `Outcome`. The message is what `knativeerrordata` tells when the
    destination sent no body.
    """


class SubscriberUnreachable(DeliveryError):
    """No answer because no connection: refused, reset, unknown host, no such function."""


class DeliveryTimeout(DeliveryError):
    """The destination did not answer within the delivery timeout (seconds)."""

    def __init__(self, message: str, *, timeout: float | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout


class DeliveryRejected(DeliveryError):
    """The destination answered with a status that is not 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class InvalidReply(DeliveryError):
    """A 2xx answer whose body is not one CloudEvent (counted as a 502)."""
