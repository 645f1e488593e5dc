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
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from brokers.base import Broker, Message
from brokers.delivery import DeliverySpec
from brokers.errors import (
    BrokerError,
)
from brokers.event import Event
from brokers.triggers import MeshConfig, TriggerSpec

if TYPE_CHECKING:
    from brokers.state import Ledger

from brokers.knative import (
    error_extensions,
    ingress_stamp,
    reply_stamp,
    route_reply,
)
from brokers.transport import Outcome, Transport, attempt

log = logging.getLogger(__name__)

MAX_REDELIVERY_DELAY: Final = 3600.0


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
