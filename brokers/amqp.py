"""How cemesh events and topology look in AMQP 0-9-1: sans-IO, no client library.

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
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from random import getrandbits
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from brokers.errors import ConfigError, InvalidEvent
from brokers.event import AttributeValue, Event, attribute_text, validate_attributes
from brokers.filters import Filter
from brokers.triggers import MeshConfig, TriggerSpec

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


# --- names and topology --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    """Every RabbitMQ name cemesh uses, derived from one prefix.

    A namespace is a DNS label and never contains `_` or `.`, so the `{prefix}._...` names of
    shared objects cannot collide with the `{prefix}.{namespace}...` names of a mesh.
    """

    prefix: str = "cemesh"

    def exchange(self, broker_key: str) -> str:
        namespace, name = broker_key.split("/", 1)
        return f"{self.prefix}.{namespace}.{name}"

    def queue(self, trigger_key: str) -> str:
        namespace, name = trigger_key.split("/", 1)
        return f"{self.prefix}.{namespace}.{name}"

    def dead_letter_queue(self, trigger_key: str) -> str:
        return self.queue(trigger_key) + ".dlq"

    @property
    def delay_exchange(self) -> str:
        return f"{self.prefix}._delay"

    def delay_queue(self, bucket_ms: int) -> str:
        return f"{self.prefix}._delay.{bucket_ms}ms"

    @property
    def registry(self) -> str:
        return f"{self.prefix}._topology"

    def reply_queue(self, replica: str) -> str:
        return f"{self.prefix}._reply.{replica}"


def binding_arguments(filt: Filter) -> dict[str, str]:
    """The headers-exchange binding for a trigger's exact filters (`x-match: all`).

    `datacontenttype` travels as the content type, which a headers exchange cannot see, so it
    is left to the dispatcher; no exact filter at all binds to every event.
    """
    arguments = {"x-match": "all"}
    for name, value in sorted(filt.exact.items()):
        if name != CONTENT_TYPE_ATTRIBUTE:
            arguments[ATTRIBUTE_PREFIX + name] = value
    return arguments


def fully_matched(filt: Filter) -> bool:
    """True when the binding alone decides the filter (the dispatcher need not check)."""
    return filt.predicate is None and CONTENT_TYPE_ATTRIBUTE not in filt.exact


def trigger_queue_arguments(dead_letter_queue: str, parallelism: int) -> dict[str, Any]:
    """A trigger's quorum queue.

    Messages RabbitMQ itself gives up on (a delivery limit, a reject) go to the trigger's
    dead-letter queue, at least once, instead of being dropped. Parallelism 1 makes the queue
    single-active-consumer, so replicas keep strict FIFO: one of them consumes at a time.
    """
    arguments: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    if parallelism == 1:
        arguments["x-single-active-consumer"] = True
    return arguments


# Listing a dead-letter queue gives every message back, which counts as a delivery; RabbitMQ 4
# drops a quorum queue's message after 20 of them by default. So the limit is set as high as it
# goes (-1, "no limit" on RabbitMQ 4, drops at once on 3.x).
DEAD_LETTER_QUEUE_ARGUMENTS: Final = {"x-queue-type": "quorum", "x-delivery-limit": 2**31 - 1}


def delay_queue_arguments(bucket_ms: int) -> dict[str, Any]:
    """A delay queue: expired messages go back, at least once, to their routing key's queue."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": bucket_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def delay_binding(bucket_ms: int) -> dict[str, str]:
    return {"x-match": "all", DELAY_HEADER: str(bucket_ms)}


@dataclass(frozen=True, slots=True)
class Binding:
    exchange: str
    arguments: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "arguments": dict(self.arguments)}


@dataclass(frozen=True, slots=True)
class QueuePlan:
    """What one trigger needs in RabbitMQ."""

    trigger: str
    name: str
    dead_letter_queue: str
    binding: Binding
    arguments: Mapping[str, Any]
    matched: bool
    parallelism: int


@dataclass(frozen=True, slots=True)
class Topology:
    """The objects a mesh config needs: exchanges by broker key, queues by trigger key."""

    names: Names
    exchanges: Mapping[str, str]
    queues: Mapping[str, QueuePlan]


def plan_topology(config: MeshConfig, names: Names) -> Topology:
    """Derive every name and binding; raises ConfigError when two triggers share a name."""
    exchanges = {key: names.exchange(key) for key in config.brokers}
    queues: dict[str, QueuePlan] = {}
    owners: dict[str, TriggerSpec] = {}
    for trigger in config.triggers:
        plan = _queue_plan(trigger, names)
        for name in (plan.name, plan.dead_letter_queue):
            other = owners.setdefault(name, trigger)
            if other is not trigger:
                raise ConfigError(
                    trigger.origin or "(config)",
                    f"Trigger {trigger.name}",
                    f"its RabbitMQ queue name {name} is also used by trigger {other.key}",
                )
        queues[trigger.key] = plan
    return Topology(names, exchanges, queues)


def _queue_plan(trigger: TriggerSpec, names: Names) -> QueuePlan:
    name = names.queue(trigger.key)
    dead = names.dead_letter_queue(trigger.key)
    return QueuePlan(
        trigger=trigger.key,
        name=name,
        dead_letter_queue=dead,
        binding=Binding(names.exchange(trigger.broker_key), binding_arguments(trigger.filter)),
        arguments=trigger_queue_arguments(dead, trigger.parallelism),
        matched=fully_matched(trigger.filter),
        parallelism=trigger.parallelism,
    )


# --- the topology registry -----------------------------------------------------------------
#
# AMQP cannot list queues or bindings, yet reconciling needs the bindings a trigger's queue had
# before (to remove stale ones) and `prune` needs the queues of triggers that are gone. So
# cemesh appends what it declares to a stream, `{prefix}._topology`, as JSON records; a stream
# is read from its start by any number of readers without consuming it. The state is the fold
# of the records, the latest record of a name winning.


@dataclass(frozen=True, slots=True)
class QueueRecord:
    name: str
    trigger: str
    dead_letter_queue: str
    bindings: tuple[Binding, ...]


@dataclass(slots=True)
class RegistryState:
    queues: dict[str, QueueRecord] = field(default_factory=dict)
    exchanges: dict[str, str] = field(default_factory=dict)
    delay_queues: set[str] = field(default_factory=set)


def queue_record(plan: QueuePlan) -> bytes:
    return _dump(
        {
            "kind": "queue",
            "name": plan.name,
            "trigger": plan.trigger,
            "dlq": plan.dead_letter_queue,
            "bindings": [plan.binding.to_json()],
        }
    )


def exchange_record(name: str, broker_key: str) -> bytes:
    return _dump({"kind": "exchange", "name": name, "broker": broker_key})


def delay_queue_record(name: str) -> bytes:
    return _dump({"kind": "delay", "name": name})


def deleted_record(name: str) -> bytes:
    return _dump({"kind": "deleted", "name": name})


def sync_record(nonce: str) -> bytes:
    return _dump({"kind": "sync", "nonce": nonce})


def sync_nonce(record: bytes) -> str | None:
    """The nonce of a sync record (how a reader knows it has read to the end), else None."""
    if b'"sync"' not in record:
        return None
    try:
        value = json.loads(record)
    except ValueError:
        return None
    nonce = value.get("nonce") if isinstance(value, dict) else None
    return nonce if isinstance(nonce, str) else None


def fold_records(records: Iterable[bytes]) -> RegistryState:
    """The registry state after these records; unreadable records are skipped."""
    state = RegistryState()
    for raw in records:
        try:
            record = json.loads(raw)
            kind, name = record["kind"], record.get("name")
            if kind == "queue":
                bindings = tuple(
                    Binding(str(b["exchange"]), {str(k): str(v) for k, v in b["arguments"].items()})
                    for b in record["bindings"]
                )
                state.queues[name] = QueueRecord(name, record["trigger"], record["dlq"], bindings)
            elif kind == "exchange":
                state.exchanges[name] = str(record["broker"])
            elif kind == "delay":
                state.delay_queues.add(name)
            elif kind == "deleted":
                state.queues.pop(name, None)
                state.exchanges.pop(name, None)
                state.delay_queues.discard(name)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return state


def stale_bindings(state: RegistryState, plan: QueuePlan) -> list[Binding]:
    """Bindings the registry knows for the plan's queue that the config no longer wants."""
    record = state.queues.get(plan.name)
    if record is None:
        return []
    return [b for b in record.bindings if b != plan.binding]


def orphaned_queues(state: RegistryState, topology: Topology) -> list[QueueRecord]:
    """Queues the registry knows with bindings whose trigger the config no longer has: they
    are unbound (so they stop filling) and kept, with their dead letters, until pruned."""
    wanted = {plan.name for plan in topology.queues.values()}
    return [r for name, r in sorted(state.queues.items()) if name not in wanted and r.bindings]


def unbound_queue_record(record: QueueRecord) -> bytes:
    """The registry record of a kept queue that has no bindings any more."""
    return _dump(
        {
            "kind": "queue",
            "name": record.name,
            "trigger": record.trigger,
            "dlq": record.dead_letter_queue,
            "bindings": [],
        }
    )


def prune_candidates(state: RegistryState, topology: Topology) -> list[str]:
    """Queues (and their dead-letter queues) of triggers, and exchanges of brokers, that the
    registry knows under this prefix but the config no longer has."""
    wanted_queues = {plan.name for plan in topology.queues.values()}
    wanted_exchanges = set(topology.exchanges.values())
    names: list[str] = []
    for name, record in sorted(state.queues.items()):
        if name not in wanted_queues:
            names.extend((name, record.dead_letter_queue))
    names.extend(sorted(n for n in state.exchanges if n not in wanted_exchanges))
    return names


def _dump(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
