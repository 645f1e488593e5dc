"""Consumers: a subscription per trigger queue (and per reply queue) that re-subscribes after
every channel or connection loss, and the messages it hands to the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractChannel
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from brokers.base import Handler, ReplyHandler
from brokers.errors import BrokerError, BrokerUnavailable, InvalidEvent
from brokers.event import Event
from brokers.rabbitmq.connection import (
    FAILURES,
    MAX_PREFETCH,
    MIN_BACKOFF,
    _drops_as_errors,
    _first,
    _resolve,
)
from brokers.rabbitmq.topology import (
    QueuePlan,
)
from brokers.rabbitmq.wire import (
    from_amqp,
    to_amqp,
)

if TYPE_CHECKING:
    from brokers.rabbitmq.broker import RabbitBroker

log = logging.getLogger(__name__)


class RabbitMessage:
    """One delivery of one trigger's queue; settled exactly once."""

    __slots__ = ("_consumer", "_delivered", "_settling", "attempt", "event", "settled")

    def __init__(
        self, consumer: _Consumer, delivered: DeliveredMessage, event: Event, attempt: int
    ) -> None:
        self._consumer = consumer
        self._delivered = delivered
        self._settling = False
        self.settled = False
        self.event = event
        self.attempt = attempt

    @property
    def matched(self) -> bool:
        return self._consumer.plan.matched

    async def ack(self) -> None:
        async with self._settle():
            await self._consumer.ack(self._delivered)

    async def retry(self, delay: float, event: Event | None = None) -> None:
        async with self._settle():
            wire = to_amqp(event or self.event, self.attempt + 1)
            await self._consumer.broker._requeue_later(self._consumer.plan.name, wire, delay)
            await self._consumer.ack(self._delivered)

    async def dead_letter(self, event: Event) -> None:
        async with self._settle():
            wire = to_amqp(event, self.attempt, parked_at=time.time_ns())
            await self._consumer.broker._send_to_queue(self._consumer.plan.dead_letter_queue, wire)
            await self._consumer.ack(self._delivered)

    async def release(self) -> None:
        async with self._settle():
            await self._consumer.nack(self._delivered)

    @contextlib.asynccontextmanager
    async def _settle(self) -> AsyncIterator[None]:
        if self.settled or self._settling:
            raise BrokerError("message already settled (acked, retried or dead-lettered)")
        self._settling = True
        try:
            yield
            self.settled = True
        finally:
            self._settling = False


class _Subscription:
    """A subscription to one queue that re-subscribes after every channel or connection loss
    (and after RabbitMQ cancels it), backing off between attempts, until stopped."""

    def __init__(self, broker: RabbitBroker, queue: str) -> None:
        self.broker = broker
        self.queue = queue
        self.stopping = asyncio.Event()
        self.subscribed = asyncio.Event()
        self._raw: RawChannel | None = None
        self._tag: str | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"consume {self.queue}")

    async def _subscribe(self, raw: RawChannel) -> str:
        """Start consuming on `raw`; returns the consumer tag."""
        raise NotImplementedError

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        while not self.stopping.is_set():
            await _first(self.broker._connected.wait(), self.stopping.wait())
            if self.stopping.is_set():
                return
            channel: AbstractChannel | None = None
            loop = asyncio.get_running_loop()
            # a dead connection may not close its channels: watch the connection too
            lost = self.broker._connection_lost or loop.create_future()
            try:
                with _drops_as_errors():
                    async with asyncio.timeout(self.broker.connect_timeout):
                        channel = await self.broker._open_channel(confirms=False)
                        raw = await channel.get_underlay_channel()
                        cancelled: asyncio.Future[None] = loop.create_future()
                        raw.on_consumer_cancel_callbacks.add(partial(_resolve, cancelled))
                        self._raw, self._tag = raw, await self._subscribe(raw)
                self.subscribed.set()
                backoff = MIN_BACKOFF
                await _first(
                    channel.closed(), cancelled, self.stopping.wait(), asyncio.shield(lost)
                )
            except FAILURES as exc:
                log.warning("consumer of %s failed: %s", self.queue, exc or type(exc).__name__)
            finally:
                self.subscribed.clear()
            if not self.stopping.is_set():
                if channel is not None and not channel.is_closed:
                    # cancelled by RabbitMQ (queue deleted?): start over on a fresh channel
                    with contextlib.suppress(*FAILURES):
                        await channel.close()
                await _first(asyncio.sleep(backoff), self.stopping.wait())
                backoff = min(backoff * 2, self.broker.max_reconnect_delay)

    async def stop(self) -> None:
        """Cancel the subscription; in-flight handlers finish and can still settle."""
        self.stopping.set()
        raw, tag = self._raw, self._tag
        if raw is not None and tag is not None and not raw.is_closed:
            with contextlib.suppress(*FAILURES):
                await raw.basic_cancel(tag, timeout=self.broker.publish_timeout)
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


class _Consumer(_Subscription):
    """Delivers one trigger's queue to a handler, at most `parallelism` at a time.

    Prefetch equals the parallelism, and a semaphore holds any delivery beyond it, so with
    parallelism 1 the next message is neither delivered nor started before the current one is
    settled: strict FIFO.
    """

    def __init__(self, broker: RabbitBroker, plan: QueuePlan, handler: Handler) -> None:
        super().__init__(broker, plan.name)
        self.plan = plan
        self.handler = handler
        self.slots = asyncio.Semaphore(plan.parallelism)
        self.inflight: set[asyncio.Task[Any]] = set()
        self.closing: set[asyncio.Task[Any]] = set()

    async def _subscribe(self, raw: RawChannel) -> str:
        await raw.basic_qos(prefetch_count=min(self.plan.parallelism, MAX_PREFETCH))
        ok = await raw.basic_consume(self.queue, self._on_delivery)
        return str(ok.consumer_tag)

    async def _on_delivery(self, delivered: DeliveredMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.inflight.add(task)
        try:
            async with self.slots:
                if self.stopping.is_set():
                    with contextlib.suppress(*FAILURES):
                        await self.nack(delivered)
                    return
                await self._handle(delivered)
        finally:
            if task is not None:
                self.inflight.discard(task)

    async def _handle(self, delivered: DeliveredMessage) -> None:
        properties = delivered.header.properties
        try:
            event, attempt = from_amqp(properties.headers, delivered.body, properties.content_type)
        except InvalidEvent as exc:
            log.warning("undecodable message in %s parked: %s", self.plan.name, exc)
            with contextlib.suppress(*FAILURES):
                await delivered.channel.basic_reject(self._tag_of(delivered), requeue=False)
            return
        message = RabbitMessage(self, delivered, event, attempt)
        try:
            await self.handler(message)
        except Exception:
            log.exception("handler of %s failed", self.plan.name)
        if not message.settled:
            with contextlib.suppress(BrokerError):
                await message.release()

    @staticmethod
    def _tag_of(delivered: DeliveredMessage) -> int:
        tag = delivered.delivery_tag
        if tag is None:
            raise BrokerError("delivery without a delivery tag")
        return tag

    async def ack(self, delivered: DeliveredMessage) -> None:
        try:
            with _drops_as_errors():
                await delivered.channel.basic_ack(self._tag_of(delivered))
        except FAILURES as exc:
            raise BrokerUnavailable(f"cannot ack, the message will be redelivered: {exc}") from exc

    async def nack(self, delivered: DeliveredMessage) -> None:
        if self.plan.parallelism == 1:
            # A quorum queue requeues a nacked message at its tail, which would break FIFO;
            # a message given back by a closing channel goes back to the head. The handler is
            # done with it, and prefetch 1 means nothing else is in flight on this channel.
            closing = asyncio.create_task(delivered.channel.close())
            self.closing.add(closing)
            closing.add_done_callback(self.closing.discard)
            return
        try:
            with _drops_as_errors():
                await delivered.channel.basic_nack(self._tag_of(delivered), requeue=True)
        except FAILURES as exc:
            raise BrokerUnavailable(f"cannot release, it will be redelivered: {exc}") from exc


class _ReplyListener(_Subscription):
    """Replies for one gateway replica: an exclusive, auto-deleted queue, declared again on
    every connection (it lives as long as the connection). Replies are best effort."""

    def __init__(self, broker: RabbitBroker, queue: str, handler: ReplyHandler) -> None:
        super().__init__(broker, queue)
        self.handler = handler

    async def _subscribe(self, raw: RawChannel) -> str:
        await raw.queue_declare(self.queue, exclusive=True, auto_delete=True)
        ok = await raw.basic_consume(self.queue, self._on_reply, no_ack=True)
        return str(ok.consumer_tag)

    async def _on_reply(self, delivered: DeliveredMessage) -> None:
        properties = delivered.header.properties
        try:
            event, _ = from_amqp(properties.headers, delivered.body, properties.content_type)
        except InvalidEvent as exc:
            log.warning("undecodable reply on %s dropped: %s", self.queue, exc)
            return
        try:
            self.handler(event)
        except Exception:
            log.exception("reply handler failed")
