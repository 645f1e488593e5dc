"""The broker layer: the CloudEvent value, the Broker port and its adapters, triggers,
filters and delivery."""

from brokers.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    InvalidEvent,
    UnknownBroker,
    UnsupportedContentType,
)
from brokers.event import AttributeValue, Event

__all__ = [
    "AttributeValue",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "Event",
    "InvalidEvent",
    "UnknownBroker",
    "UnsupportedContentType",
]
