"""How cemesh events look in AMQP 0-9-1: sans-IO, no client library.

Why a separate module: the wire shape and the names are a contract with RabbitMQ (bindings,
operators reading queues, other publishers), so they are pure functions that unit tests pin
down without a server; `rabbitmq` only moves these values over aio-pika.

Message shape (docs/rabbitmq.md):
- every context attribute is a `ce-<name>` header whose value is the attribute's canonical
  text (`attribute_text`), so a headers-exchange binding `{"x-match": "all", "ce-type": "t"}`
  matches exactly what `filters: [{exact: {type: t}}]` means. Integers and booleans keep their
  type through `cemesh-types` (`count:i,flag:b`); header values stay strings because RabbitMQ
  compares header values with their AMQP type and binding values are strings;
- `datacontenttype` is the `content_type` property (a header only when too long for it);
- the data is the body as is; `cemesh-data: empty` tells `b""` from no data;
- `cemesh-attempt` counts failed deliveries, so a retry survives a crash with its count;
- `message_id` is a fresh id per AMQP message (the id of a dead letter, and what the client
  uses to match returns); the CloudEvent id travels as `ce-id`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from random import getrandbits
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from brokers.errors import InvalidEvent
from brokers.event import AttributeValue, Event, attribute_text, validate_attributes

ATTRIBUTE_PREFIX: Final = "ce-"
ATTEMPT_HEADER: Final = "cemesh-attempt"
TYPES_HEADER: Final = "cemesh-types"
DATA_HEADER: Final = "cemesh-data"
DELAY_HEADER: Final = "cemesh-delay"
PARKED_HEADER: Final = "cemesh-parked-at"
CONTENT_TYPE_ATTRIBUTE: Final = "datacontenttype"
SHORTSTR_MAX: Final = 255
PERSISTENT: Final = 2
HeaderValue = str | int | bool


def new_message_id() -> str:
    """A random UUID4 as hex: unique per AMQP message, cheaper than `uuid.uuid4()`."""
    return UUID(int=getrandbits(128), version=4).hex


@dataclass(frozen=True, slots=True)
class WireMessage:
    """What goes into basic.publish: headers, content type, body, message id."""

    headers: dict[str, HeaderValue]
    body: bytes
    content_type: str | None
    message_id: str = field(default_factory=new_message_id)


def to_amqp(event: Event, attempt: int = 0, *, parked_at: int | None = None) -> WireMessage:
    """Encode an event (and its failed-delivery count) as an AMQP message.

    `parked_at` (epoch nanoseconds) marks a dead letter: dead-letter queues are listed in that
    order, because reading a quorum queue without consuming it does not keep its order.
    """
    headers: dict[str, HeaderValue] = {}
    typed: list[str] = []
    content_type: str | None = None
    for name, value in event.attributes.items():
        text = attribute_text(value)
        if name == CONTENT_TYPE_ATTRIBUTE and len(text.encode()) <= SHORTSTR_MAX:
            content_type = text
            continue
        if len(name) > SHORTSTR_MAX - len(ATTRIBUTE_PREFIX):
            raise InvalidEvent(f"attribute name '{name[:32]}...' is too long for AMQP", field=name)
        headers[ATTRIBUTE_PREFIX + name] = text
        if value is True or value is False:
            typed.append(f"{name}:b")
        elif isinstance(value, int):
            typed.append(f"{name}:i")
    if typed:
        headers[TYPES_HEADER] = ",".join(typed)
    if attempt:
        headers[ATTEMPT_HEADER] = attempt
    if event.data == b"":
        headers[DATA_HEADER] = "empty"
    if parked_at is not None:
        headers[PARKED_HEADER] = parked_at
    return WireMessage(headers, event.data or b"", content_type)


def from_amqp(
    headers: Mapping[str, Any] | None, body: bytes, content_type: str | None
) -> tuple[Event, int]:
    """Decode an AMQP message into the event and its attempt count. Raises InvalidEvent."""
    headers = headers or {}
    types = _types(headers.get(TYPES_HEADER))
    attributes: dict[str, object] = {}
    for key, raw in headers.items():
        if not key.startswith(ATTRIBUTE_PREFIX):
            continue
        name = key[len(ATTRIBUTE_PREFIX) :]
        attributes[name] = _typed(name, _text(name, raw), types.get(name))
    if content_type:
        attributes[CONTENT_TYPE_ATTRIBUTE] = content_type
    if "specversion" not in attributes:
        raise InvalidEvent("not a CloudEvent: no ce-specversion header", field="specversion")
    attempt = headers.get(ATTEMPT_HEADER, 0)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise InvalidEvent(f"invalid {ATTEMPT_HEADER} header", field=ATTEMPT_HEADER)
    data: bytes | None = body
    if not body:
        data = b"" if headers.get(DATA_HEADER) == "empty" else None
    return Event(validate_attributes(attributes), data), attempt


def _text(name: str, raw: object) -> str | int | bool:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"header ce-{name} is not UTF-8", field=name) from exc
    if isinstance(raw, str | int | bool):
        return raw  # ints and booleans come from other publishers; ours are strings
    raise InvalidEvent(f"header ce-{name} has an unsupported AMQP type", field=name)


def _types(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise InvalidEvent(f"invalid {TYPES_HEADER} header", field=TYPES_HEADER)
    types: dict[str, str] = {}
    for item in raw.split(","):
        name, _, kind = item.partition(":")
        if kind not in ("i", "b"):
            raise InvalidEvent(f"invalid {TYPES_HEADER} entry '{item}'", field=TYPES_HEADER)
        types[name] = kind
    return types


def _typed(name: str, value: str | int | bool, kind: str | None) -> AttributeValue:
    if kind is None or not isinstance(value, str):
        return value
    if kind == "b":
        if value not in ("true", "false"):
            raise InvalidEvent(f"attribute '{name}' must be true or false", field=name)
        return value == "true"
    try:
        return int(value)
    except ValueError:
        raise InvalidEvent(f"attribute '{name}' must be an integer", field=name) from None


def dead_letter_id(message_id: str | None, headers: Mapping[str, Any] | None, body: bytes) -> str:
    """The stable id of a message in a dead-letter queue.

    cemesh gives every AMQP message its own `message_id`; a message parked by RabbitMQ itself
    from another publisher may have none, so it gets a digest of its content instead (two
    identical such messages then share an id, and are removed together).
    """
    if message_id:
        return message_id
    digest = hashlib.sha256(body)
    for key, value in sorted((headers or {}).items()):
        if key.startswith(ATTRIBUTE_PREFIX):
            digest.update(f"\0{key}={value}".encode())
    return "sha256-" + digest.hexdigest()[:32]


def parked_at(headers: Mapping[str, Any] | None) -> int:
    """When a dead letter was parked (epoch ns): our header, else RabbitMQ's `x-death` time
    (whole seconds) for messages RabbitMQ dead-lettered itself, else 0."""
    headers = headers or {}
    value = headers.get(PARKED_HEADER)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        when = deaths[0].get("time")
        if isinstance(when, datetime):
            return int(when.timestamp()) * 1_000_000_000
    return 0


# --- retries -------------------------------------------------------------------------------


def delay_bucket(delay: float) -> int:
    """The delay queue, in milliseconds, that holds a retry for at least `delay` seconds.

    RabbitMQ expires messages only at a queue's head, so each delay queue has one fixed TTL.
    Delays round up to two significant digits (at most 10% late, never early): 0.25 s -> 250,
    1.234 s -> 1300, 37 ms -> 37. Zero or less means "no delay queue".
    """
    if delay <= 0:
        return 0
    ms = max(1, math.ceil(round(delay * 1000, 6)))
    if ms >= 100:
        unit = 10 ** (len(str(ms)) - 2)
        ms = -(-ms // unit) * unit
    return ms


# --- connection URL ------------------------------------------------------------------------


def with_heartbeat(url: str, seconds: int) -> str:
    """The URL with `heartbeat=` added unless it sets one: RabbitMQ's 60 s default would let a
    silently dead connection (no FIN: a cut network) look alive for minutes."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "heartbeat" for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("heartbeat", str(seconds))])))


def masked_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":******@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
