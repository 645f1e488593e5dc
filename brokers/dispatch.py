"""Delivery: from a trigger's queue to its subscriber, with Knative's semantics.

Why here and not in each broker: retries, replies and dead letters must behave the same on the
memory and the RabbitMQ broker, so the broker port only keeps messages and this module decides
what happens to them (DESIGN section 4):
- binary-mode POST with `Prefer: reply`; a CloudEvent in a 2xx body (not 202) is a reply, sent
  back into the same broker with `knativebrokerttl` decremented (dropped at 0);
- retried on network errors, timeouts, 404, 408, 409, 429 and 5xx (honouring `Retry-After` on
  429/503) up to `retry` times with linear or exponential backoff; the count lives in the message;
- then the dead-letter sink with the `knativeerror*` extensions, or the trigger's own store. A
  sink that is down is retried too: a message is only acked once it is delivered or parked.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from brokers.base import Broker, Message
from brokers.codec import from_http, to_binary
from brokers.delivery import DeliverySpec, Destination
from brokers.errors import (
    BrokerError,
    DeliveryError,
    DeliveryRejected,
    InvalidEvent,
    InvalidReply,
)
from brokers.event import Event
from brokers.triggers import MeshConfig, TriggerSpec

if TYPE_CHECKING:
    from brokers.state import Ledger

log = logging.getLogger(__name__)

TTL_ATTRIBUTE: Final = "knativebrokerttl"
ARRIVAL_ATTRIBUTE: Final = "knativearrivaltime"
DEFAULT_TTL: Final = 255
RETRYABLE: Final = frozenset({404, 408, 409, 429})
ERROR_DATA_LIMIT: Final = 1024
MAX_REDELIVERY_DELAY: Final = 3600.0
CORRELATION_ID: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]{0,62}):([0-9a-f]{32})")
"""`<replica>:<128 random bits in hex>`: what request-reply stamps as `correlationid`."""
REPLY_ORIGIN: Final = "cemeshreplyorigin"
"""Set on a reply routed to a replica: the broker it was published to (never delivered on)."""


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


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ingress_stamp(event: Event, arrival: str | None = None) -> Event:
    """What ingress adds: the arrival time, and the TTL when the sender set none."""
    changes: dict[str, str | int] = {ARRIVAL_ATTRIBUTE: arrival or now_rfc3339()}
    if TTL_ATTRIBUTE not in event.attributes:
        changes[TTL_ATTRIBUTE] = DEFAULT_TTL
    attributes = {**event.attributes, **changes}
    return Event(attributes, event.data)


def ttl_of(event: Event) -> int:
    """The event's remaining TTL (an unreadable value counts as exhausted)."""
    raw = event.get(TTL_ATTRIBUTE)
    if raw is None:
        return DEFAULT_TTL
    try:
        return int(raw)
    except ValueError:
        return 0


def reply_stamp(request: Event, reply: Event) -> Event | None:
    """A reply inherits the request's TTL minus one; None when the TTL is spent."""
    ttl = ttl_of(request) - 1
    if ttl <= 0:
        return None
    attributes = dict(reply.attributes)
    attributes[TTL_ATTRIBUTE] = ttl
    correlation = request.get("correlationid")
    if correlation is not None and "replyid" not in attributes:
        attributes["replyid"] = correlation
    attributes.pop(ARRIVAL_ATTRIBUTE, None)
    return Event(attributes, reply.data)


def reply_replica(event: Event) -> str | None:
    """The gateway replica a reply is addressed to, when `replyid` is one of our correlation
    ids (`<replica>:<32 hex digits>`); any other replyid is an ordinary extension, never routed,
    so its length or shape cannot fail a request after the event was published."""
    reply_id = event.text("replyid")
    match = CORRELATION_ID.fullmatch(reply_id) if reply_id else None
    return match.group(1) if match else None


async def route_reply(broker: Broker, event: Event, origin: str) -> None:
    """Hand a reply to the request-reply waiter of its replica (best effort), stamped with the
    broker (`namespace/name`) it was published to: the waiter takes replies from its own
    request's broker only, so one tenant cannot answer another's requests."""
    replica = reply_replica(event)
    if replica is not None:
        try:
            await broker.send_reply(replica, event.replace(**{REPLY_ORIGIN: origin}))
        except BrokerError as exc:
            log.warning("reply %s not routed to replica %s: %s", event.id, replica, exc)


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


def error_extensions(destination: Destination, outcome: Outcome) -> dict[str, str]:
    data = outcome.body[:ERROR_DATA_LIMIT] or outcome.error.encode()[:ERROR_DATA_LIMIT]
    extensions = {"knativeerrordest": dest_uri(destination)}
    if outcome.status:
        extensions["knativeerrorcode"] = str(outcome.status)
    if data:
        extensions["knativeerrordata"] = base64.b64encode(data).decode("ascii")
    return extensions


def dest_uri(destination: Destination) -> str:
    return destination.uri or f"function:{destination.function}"


@dataclass(slots=True)
class Stats:
    """Counters the gateway exposes (metrics, the live view)."""

    delivered: int = 0
    failed_attempts: int = 0
    retried: int = 0
    dead_lettered: int = 0
    replies: int = 0
    ttl_dropped: int = 0
    by_trigger: dict[tuple[str, str], int] = field(default_factory=dict)

    def count(self, trigger: str, outcome: str) -> None:
        key = (trigger, outcome)
        self.by_trigger[key] = self.by_trigger.get(key, 0) + 1


class Dispatcher:
    """Consumes every trigger's queue and delivers with Knative semantics.

    Triggers are looked up by key for every message, so a changed filter, subscriber or
    delivery spec applies to the next delivery; `reconcile` starts consuming new triggers and
    retires removed ones in the background (what their queues hold is delivered first, within
    `retire_grace`; what is left stays queued).
    """

    def __init__(
        self,
        config: MeshConfig,
        broker: Broker,
        transport: Transport,
        ledger: Ledger | None = None,
        *,
        retire_grace: float = 10.0,
    ) -> None:
        self.config = config
        self.broker = broker
        self.transport = transport
        self.ledger = ledger
        self.retire_grace = retire_grace
        self.stats = Stats()
        self._inflight: set[asyncio.Task[None]] = set()
        self._specs: dict[str, TriggerSpec] = {}
        self._retiring: dict[str, asyncio.Task[None]] = {}
        self.listeners: list[Any] = []
        self.reply_hooks: list[Callable[[TriggerSpec, Event, Event], Event]] = []

    async def start(self) -> None:
        """Start = reconcile from no trigger at all."""
        await self.reconcile(self.config)

    async def reconcile(self, config: MeshConfig) -> None:
        """Consume what `config` adds, retire what it removes, update what it changes."""
        wanted = {t.key: t for t in config.triggers}
        running = {key for key in self._specs if key not in self._retiring}
        for key in running - wanted.keys():
            self._retiring[key] = asyncio.create_task(self._retire(key), name=f"retire {key}")
        for key, spec in wanted.items():
            old = self._specs.get(key)
            self._specs[key] = spec
            if key in self._retiring:  # back before its retirement finished: start over
                await self._cancel_retirement(key)
                old = None
            if old is None:
                await self.broker.consume(spec, partial(self._tracked, key))
            elif old.parallelism != spec.parallelism:
                await self.broker.retire(key, 0)
                await self.broker.consume(spec, partial(self._tracked, key))
        self.config = config

    async def _retire(self, key: str) -> None:
        try:
            await self.broker.retire(key, self.retire_grace)
        finally:
            if self._retiring.get(key) is asyncio.current_task():
                del self._retiring[key]
                self._specs.pop(key, None)

    async def _cancel_retirement(self, key: str) -> None:
        task = self._retiring.pop(key)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self.broker.retire(key, 0)

    async def stop(self, grace: float) -> None:
        """Stop taking messages; let in-flight deliveries finish within `grace` seconds."""
        for task in list(self._retiring.values()):
            task.cancel()
        await asyncio.gather(*self._retiring.values(), return_exceptions=True)
        self._retiring.clear()
        await self.broker.stop_consuming()
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()

    async def _tracked(self, key: str, message: Message) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            trigger = self._specs.get(key)
            if trigger is None:  # retired meanwhile: give it back, it stays queued
                await message.release()
                return
            await self.handle(trigger, message)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def handle(self, trigger: TriggerSpec, message: Message) -> None:
        event = message.event
        if not message.matched and not trigger.filter.matches(event):
            await message.ack()
            return
        if self.ledger is not None:  # replay targeting and delivery dedup (brokers/state)
            checked = await self.ledger.before_delivery(trigger, message)
            if checked is None:
                await message.ack()
                return
            event = checked
        delivery = trigger.delivery
        if message.attempt > delivery.retry and "knativeerrordest" in event.attributes:
            await self._dead_letter(trigger, message, event)
            return
        outcome = await attempt(self.transport, trigger.subscriber, event, delivery.timeout)
        self._notify(trigger, event, outcome)
        if outcome.ok:
            await self._succeeded(trigger, message, outcome)
            return
        self.stats.failed_attempts += 1
        log.info(
            "delivery failed",
            extra={
                "trigger": trigger.key,
                "ce_id": event.id,
                "traceparent": event.text("traceparent"),
                "error": outcome.error,
                "attempt": message.attempt + 1,
            },
        )
        if outcome.retryable and message.attempt < delivery.retry:
            self.stats.retried += 1
            self.stats.count(trigger.key, "retried")
            await message.retry(_delay(delivery, message.attempt + 1, outcome.retry_after))
            return
        failed = Event(
            {**event.attributes, **error_extensions(trigger.subscriber, outcome)}, event.data
        )
        await self._dead_letter(trigger, message, failed)

    async def _succeeded(self, trigger: TriggerSpec, message: Message, outcome: Outcome) -> None:
        if outcome.reply is not None:
            reply = reply_stamp(message.event, outcome.reply)
            if reply is None:
                self.stats.ttl_dropped += 1
                log.warning(
                    "reply dropped: knativebrokerttl exhausted (event loop?)",
                    extra={
                        "trigger": trigger.key,
                        "ce_id": outcome.reply.id,
                        "ce_type": outcome.reply.type,
                    },
                )
            else:
                for hook in self.reply_hooks:
                    reply = hook(trigger, message.event, reply)
                try:
                    await self.broker.publish(trigger.broker_key, [ingress_stamp(reply)])
                except BrokerError as exc:
                    log.warning("reply not accepted, will redeliver: %s", exc)
                    await message.retry(1.0)
                    return
                self.stats.replies += 1
                await route_reply(self.broker, reply, trigger.broker_key)
        if self.ledger is not None:  # mark before the ack: a lost ack is covered
            await self.ledger.delivered(trigger, message.event)
        self.stats.delivered += 1
        self.stats.count(trigger.key, "delivered")
        await message.ack()

    async def _dead_letter(self, trigger: TriggerSpec, message: Message, failed: Event) -> None:
        sink = trigger.delivery.dead_letter_sink
        if sink is None:
            await message.dead_letter(failed)
            self._counted_dead(trigger, failed, "kept in the trigger's dead-letter store")
            return
        outcome = await attempt(self.transport, sink, failed, trigger.delivery.timeout)
        if outcome.ok:
            self._counted_dead(trigger, failed, f"sent to {sink.describe()}")
            await message.ack()
            return
        # The sink is down: keep the event (with its error extensions) and try again later.
        log.warning("dead-letter sink %s failed (%s); retrying", sink.describe(), outcome.error)
        delay = _delay(trigger.delivery, message.attempt + 1, outcome.retry_after)
        await message.retry(min(delay, 30.0), failed)

    def _counted_dead(self, trigger: TriggerSpec, failed: Event, where: str) -> None:
        self.stats.dead_lettered += 1
        self.stats.count(trigger.key, "dead_lettered")
        log.warning(
            "dead letter %s",
            where,
            extra={"trigger": trigger.key, "ce_id": failed.id, "ce_type": failed.type},
        )

    def _notify(self, trigger: TriggerSpec, event: Event, outcome: Outcome) -> None:
        for listener in self.listeners:
            listener(trigger, event, outcome)


def _delay(delivery: DeliverySpec, retry_number: int, hinted: float | None) -> float:
    delay = delivery.backoff(retry_number)
    if hinted is not None:
        delay = max(delay, hinted)
    return min(delay, MAX_REDELIVERY_DELAY)
