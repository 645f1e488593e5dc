"""The embedded broker: in-process queues, one per trigger.

It is the default of `make run` and the double in unit tests, so it raises wherever RabbitMQ
would (unknown broker, closed broker, acking twice) and it runs each trigger's whole filter when
routing: that is what RabbitMQ's headers exchange does for exact filters, done for every dialect
because here it costs nothing extra. Triggers are indexed by their exact `type` so 1,000
triggers do not mean 1,000 evaluations per event.

Its queues are bounded, by count and by bytes per trigger: a slow subscriber makes the ingress
answer 503 with Retry-After (as RabbitMQ's `reject-publish` overflow does) instead of growing
the process without bound. A publish is all or none: it is refused before anything is queued.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from brokers.base import DeadLetter, Handler, ReplyHandler
from brokers.errors import BrokerError, BrokerUnavailable, UnknownBroker
from brokers.event import Event, size_of
from brokers.filterindex import FilterIndex
from brokers.triggers import MeshConfig, TriggerSpec

log = logging.getLogger(__name__)
MAX_QUEUE_LENGTH: Final = 10_000
MAX_QUEUE_BYTES: Final = 64 * 1024 * 1024


class TriggerIndex:
    """Triggers of one broker, looked up by their exact values first (brokers/filterindex)."""

    def __init__(self, triggers: Sequence[TriggerSpec]) -> None:
        self._index = FilterIndex((t, t.filter) for t in triggers)

    def matching(self, event: Event) -> list[TriggerSpec]:
        return self._index.matching(event)


@dataclass(slots=True)
class MemoryMessage:
    broker: MemoryBroker
    trigger: str
    event: Event
    attempt: int = 0
    matched: bool = True
    settled: bool = field(default=False, repr=False)

    def _settle(self) -> None:
        if self.settled:
            raise BrokerError("message already settled (acked, retried or dead-lettered)")
        self.settled = True

    async def ack(self) -> None:
        self._settle()

    async def retry(self, delay: float, event: Event | None = None) -> None:
        self._settle()
        again = MemoryMessage(self.broker, self.trigger, event or self.event, self.attempt + 1)
        self.broker._schedule(again, delay)

    async def dead_letter(self, event: Event) -> None:
        self._settle()
        self.broker._park(self.trigger, event)

    async def release(self) -> None:
        self._settle()
        again = MemoryMessage(self.broker, self.trigger, self.event, self.attempt)
        self.broker._queues[self.trigger].put_front(again)


class TriggerQueue:
    """A trigger's FIFO. Unlike asyncio.Queue, a released message goes back to the head, as
    it does on RabbitMQ, so a strict-FIFO trigger keeps its order."""

    def __init__(self) -> None:
        self._items: deque[MemoryMessage] = deque()
        self._waiting = asyncio.Event()
        self.bytes = 0

    def put(self, message: MemoryMessage) -> None:
        self._items.append(message)
        self.bytes += size_of(message.event)
        self._waiting.set()

    def put_front(self, message: MemoryMessage) -> None:
        self._items.appendleft(message)
        self.bytes += size_of(message.event)
        self._waiting.set()

    async def get(self) -> MemoryMessage:
        while not self._items:
            self._waiting.clear()
            await self._waiting.wait()
        message = self._items.popleft()
        self.bytes -= size_of(message.event)
        return message

    def __len__(self) -> int:
        return len(self._items)


class MemoryBroker:
    """In-memory Broker. Not durable: events live as long as the process.

    `max_queue_length` and `max_queue_bytes` bound each trigger's queue (retries waiting for
    their delay count once they are due).
    """

    def __init__(
        self,
        *,
        max_queue_length: int = MAX_QUEUE_LENGTH,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
    ) -> None:
        self.max_queue_length = max_queue_length
        self.max_queue_bytes = max_queue_bytes
        self._indexes: dict[str, TriggerIndex] = {}
        self._queues: dict[str, TriggerQueue] = {}
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._inflight: dict[str, set[asyncio.Task[None]]] = defaultdict(set)
        self._timers: set[asyncio.TimerHandle] = set()
        self._dead: dict[str, dict[str, Event]] = defaultdict(dict)
        self._ids = itertools.count(1)
        self._open = False
        self._reply_handlers: dict[str, ReplyHandler] = {}

    async def open(self, config: MeshConfig) -> None:
        await self.reconcile(config)
        self._open = True

    async def reconcile(self, config: MeshConfig) -> None:
        # Queues are kept when their trigger goes (as RabbitMQ keeps them until pruned); a
        # new index is swapped in whole, so a publish routes by one config or the other.
        for trigger in config.triggers:
            self._queues.setdefault(trigger.key, TriggerQueue())
        self._indexes = {key: TriggerIndex(config.triggers_of(key)) for key in config.brokers}

    async def close(self) -> None:
        self._open = False
        await self.stop_consuming()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    @property
    def ready(self) -> bool:
        return self._open

    async def publish(self, broker: str, events: Sequence[Event]) -> None:
        if not self._open:
            raise BrokerUnavailable("the broker is closed")
        index = self._indexes.get(broker)
        if index is None:
            raise UnknownBroker(f"broker {broker} does not exist")
        routed = [(event, index.matching(event)) for event in events]
        self._check_room(routed)
        for event, triggers in routed:
            for trigger in triggers:
                self._queues[trigger.key].put(MemoryMessage(self, trigger.key, event))

    def _check_room(self, routed: Sequence[tuple[Event, Sequence[TriggerSpec]]]) -> None:
        count: dict[str, int] = defaultdict(int)
        size: dict[str, int] = defaultdict(int)
        for event, triggers in routed:
            for trigger in triggers:
                count[trigger.key] += 1
                size[trigger.key] += size_of(event)
        for key, adding in count.items():
            queue = self._queues[key]
            if (
                len(queue) + adding > self.max_queue_length
                or queue.bytes + size[key] > self.max_queue_bytes
            ):
                raise BrokerUnavailable(
                    f"the queue of trigger {key} is full ({len(queue)} events, {queue.bytes} "
                    "bytes): its subscriber is behind; retry later",
                    retry_after=1.0,
                )

    async def consume(self, trigger: TriggerSpec, handler: Handler) -> None:
        queue = self._queues.get(trigger.key)
        if queue is None:
            raise UnknownBroker(f"trigger {trigger.key} is not part of the opened config")
        if trigger.key in self._consumers:
            raise BrokerError(f"trigger {trigger.key} is already consumed")
        task = asyncio.create_task(self._consume(trigger.key, queue, handler, trigger.parallelism))
        self._consumers[trigger.key] = task

    async def _consume(
        self, key: str, queue: TriggerQueue, handler: Handler, parallelism: int
    ) -> None:
        slots = asyncio.Semaphore(parallelism)
        while True:
            await slots.acquire()
            try:
                message = await queue.get()
            except asyncio.CancelledError:
                slots.release()
                raise
            # Handlers run in their own tasks so stopping the consumer never cancels one in
            # flight; with parallelism 1 the next message waits for the slot (strict FIFO).
            task = asyncio.create_task(self._run(handler, message))
            inflight = self._inflight[key]
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            task.add_done_callback(lambda _: slots.release())

    async def _run(self, handler: Handler, message: MemoryMessage) -> None:
        try:
            await handler(message)
        except Exception:
            log.exception("handler failed; the message is released for redelivery")
        if not message.settled:
            if self._open:
                log.warning("a handler returned without settling; the message is released")
            await message.release()

    async def stop_consuming(self) -> None:
        consumers = list(self._consumers.values())
        self._consumers.clear()
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)

    async def retire(self, trigger: str, grace: float) -> None:
        queue = self._queues.get(trigger)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (queue and len(queue)) or self._inflight.get(trigger):
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        task = self._consumers.pop(trigger, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _schedule(self, message: MemoryMessage, delay: float) -> None:
        queue = self._queues[message.trigger]
        if delay <= 0:
            queue.put(message)
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            queue.put(message)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)

    def _park(self, trigger: str, event: Event) -> None:
        self._dead[trigger][str(next(self._ids))] = event

    async def dead_letters(self, trigger: str, limit: int = 100) -> list[DeadLetter]:
        parked = self._dead.get(trigger, {})
        return [DeadLetter(i, trigger, e) for i, e in itertools.islice(parked.items(), limit)]

    async def remove_dead_letters(self, trigger: str, ids: Sequence[str]) -> int:
        parked = self._dead.get(trigger, {})
        if not ids:
            count = len(parked)
            parked.clear()
            return count
        return sum(parked.pop(i, None) is not None for i in ids)

    async def listen_replies(self, replica: str, handler: ReplyHandler) -> None:
        self._reply_handlers[replica] = handler

    async def send_reply(self, replica: str, event: Event) -> None:
        if not self._open:
            raise BrokerUnavailable("the broker is closed")
        handler = self._reply_handlers.get(replica)
        if handler is not None:
            handler(event)
