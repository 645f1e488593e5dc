"""The RabbitMQ broker: the Broker port over aio-pika, durable and at least once.

Why it is built this way (docs/rabbitmq.md has the whole story):
- Its own reconnect loop over plain `aio_pika.connect`, not `connect_robust`: a robust
  connection makes a publish wait for the reconnection instead of failing (aio-pika #556, #636)
  and its consumer restore has a history of silently ending with zero consumers (#231, #626).
  Here a publish while disconnected fails at once with BrokerUnavailable (the gateway's 503),
  `ready` is false, and every consumer re-subscribes on its own after each reconnection.
- Per message, the hot path talks to aio-pika's underlying aiormq channel (publish with
  pipelined confirms, consume, ack): aio-pika's Message objects would only be converted back.
- Nothing is held only in memory: a retry is a confirmed publish to a delay queue (TTL, then
  dead-lettered back to the trigger's queue, at least once) before the original is acked; a
  dead letter is a confirmed publish to the trigger's dead-letter queue before the ack. A crash
  in between duplicates a message, never loses it or resets its attempt count.
- AMQP cannot list queues or bindings, so what cemesh declares is recorded in a stream (see
  `amqp`): reconciling removes stale bindings and `prune` finds the queues of removed triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import AbstractChannel as RawChannel

from brokers.base import DeadLetter, Handler, ReplyHandler
from brokers.errors import BrokerError, BrokerUnavailable, UnknownBroker
from brokers.event import Event
from brokers.rabbitmq import deadletters, declare
from brokers.rabbitmq.admin import _Admin
from brokers.rabbitmq.connection import (
    FAILURES,
    MIN_BACKOFF,
    _drops_as_errors,
    _properties,
    _resolve,
    _table,
)
from brokers.rabbitmq.consumers import _Consumer, _ReplyListener
from brokers.rabbitmq.registry import (
    delay_queue_record,
)
from brokers.rabbitmq.topology import (
    Names,
    QueuePlan,
    Topology,
    delay_binding,
    delay_queue_arguments,
    plan_topology,
)
from brokers.rabbitmq.wire import (
    DELAY_HEADER,
    WireMessage,
    delay_bucket,
    masked_url,
    to_amqp,
    with_heartbeat,
)
from brokers.triggers import MeshConfig, TriggerSpec

log = logging.getLogger(__name__)


class RabbitBroker:
    """Broker on RabbitMQ: an exchange per broker, a quorum queue per trigger.

    `prefix` starts every name (tests use a unique one). `publish_timeout` bounds a publish,
    confirms included; `connect_timeout` bounds each connection attempt; reconnection backs
    off from 0.1 s to `max_reconnect_delay`; `connection_name` is what RabbitMQ shows for the
    connections (default `cemesh {prefix}`); `heartbeat` (seconds) applies unless the URL has
    its own `heartbeat=`.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "cemesh",
        publish_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        max_reconnect_delay: float = 5.0,
        connection_name: str | None = None,
        heartbeat: int = 15,
    ) -> None:
        self.url = with_heartbeat(url, heartbeat)
        self.connection_name = connection_name or f"cemesh {prefix}"
        self.names = Names(prefix)
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        self.max_reconnect_delay = max_reconnect_delay
        self._topology: Topology | None = None
        self._connection: AbstractConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._publisher_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._connection_lost: asyncio.Future[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._consumers: list[_Consumer] = []
        self._listeners: list[_ReplyListener] = []
        self._retired: list[_Consumer] = []
        self._delay_queues: set[int] = set()
        self._delay_lock = asyncio.Lock()
        self._open = False

    def __repr__(self) -> str:
        return f"RabbitBroker({masked_url(self.url)!r}, prefix={self.names.prefix!r})"

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self, config: MeshConfig) -> None:
        topology = plan_topology(config, self.names)
        if self._open and self._connection is not None:
            await self.reconcile(config)
            return
        self._topology = topology
        await self._connect(full=True)
        self._open = True
        self._supervisor = asyncio.create_task(self._supervise(), name="rabbitmq supervisor")

    async def reconcile(self, config: MeshConfig) -> None:
        """Declare and bind what `config` adds, unbind what it removes (see `_reconcile`)."""
        if not self._open or self._connection is None:
            raise BrokerUnavailable("the broker is not open", retry_after=1.0)
        topology = plan_topology(config, self.names)
        previous, self._topology = self._topology, topology
        try:
            with _drops_as_errors():
                await self._reconcile(self._connection, full=True)
        except BaseException:
            self._topology = previous
            raise
        for consumer in self._consumers:  # a changed filter may change what the binding did
            consumer.plan = topology.queues.get(consumer.plan.trigger, consumer.plan)

    async def close(self) -> None:
        self._open = False
        await self.stop_consuming()
        listeners, self._listeners = self._listeners, []
        await asyncio.gather(*(listener.stop() for listener in listeners))
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        self._connected.clear()
        if self._connection_lost is not None:
            _resolve(self._connection_lost)
        connection, self._connection = self._connection, None
        self._publisher = None
        self._retired.clear()
        if connection is not None:
            with contextlib.suppress(*FAILURES):
                await connection.close()

    @property
    def ready(self) -> bool:
        return self._open and self._connected.is_set()

    async def _connect(self, *, full: bool) -> None:
        try:
            connection = await self._new_connection()
        except FAILURES as exc:
            raise BrokerUnavailable(
                f"RabbitMQ at {masked_url(self.url)} is unreachable: {exc}",
                retry_after=self.max_reconnect_delay,
            ) from exc
        try:
            with _drops_as_errors():
                await self._reconcile(connection, full=full)
                publisher = connection.channel(publisher_confirms=True, on_return_raises=True)
                await publisher.initialize(timeout=self.connect_timeout)
        except BaseException as exc:
            with contextlib.suppress(*FAILURES):
                await connection.close()
            if isinstance(exc, FAILURES):
                raise BrokerUnavailable(f"RabbitMQ topology setup failed: {exc}") from exc
            raise
        previous, self._connection, self._publisher = self._connection, connection, publisher
        if previous is not None:  # a stuck connection is not closed by itself
            with contextlib.suppress(*FAILURES):
                async with asyncio.timeout(self.connect_timeout):
                    await previous.close()
        self._connection_lost = asyncio.get_running_loop().create_future()
        self._delay_queues.clear()
        self._lost.clear()
        connection.close_callbacks.add(self._on_connection_closed)
        if connection.connected.is_set():
            self._connected.set()
        else:  # lost while we were declaring: the supervisor starts over
            self._on_connection_closed(connection)

    async def _new_connection(self) -> AbstractConnection:
        return await aio_pika.connect(
            self.url,
            timeout=self.connect_timeout,
            client_properties={"connection_name": self.connection_name},
        )

    def _on_connection_closed(self, sender: object, exc: BaseException | None = None) -> None:
        if sender is self._connection:
            self._connected.clear()
            self._lost.set()
            if self._connection_lost is not None:
                _resolve(self._connection_lost)

    async def _supervise(self) -> None:
        while self._open:
            await self._lost.wait()
            log.warning("RabbitMQ connection lost; reconnecting")
            backoff = MIN_BACKOFF
            while self._open:
                await asyncio.sleep(backoff)
                try:
                    await self._connect(full=False)
                except (BrokerError, *FAILURES) as exc:
                    log.warning("RabbitMQ reconnect failed (%s); next try in %.1fs", exc, backoff)
                    backoff = min(backoff * 2, self.max_reconnect_delay)
                else:
                    log.info("RabbitMQ connection restored")
                    break

    async def _open_channel(
        self, *, confirms: bool, connection: AbstractConnection | None = None
    ) -> AbstractChannel:
        connection = connection or self._connection
        if connection is None or (not self._connected.is_set() and connection is self._connection):
            raise BrokerUnavailable("not connected to RabbitMQ", retry_after=1.0)
        channel = connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
        await channel.initialize(timeout=self.connect_timeout)
        return channel

    def _plan(self, trigger: str) -> QueuePlan:
        plan = self._topology.queues.get(trigger) if self._topology else None
        if plan is None:
            raise UnknownBroker(f"trigger {trigger} is not part of the opened config")
        return plan

    # --- topology (brokers/rabbitmq/declare.py) ---------------------------------------------

    async def _reconcile(self, connection: AbstractConnection, *, full: bool) -> None:
        await declare.declare(self, connection, full=full)

    async def plan_prune(self, config: MeshConfig | None = None) -> list[str]:
        """Queues and exchanges under this prefix that `config` (default: the opened one) no
        longer needs: what `cemesh topology prune` lists before deleting anything."""
        return await declare.plan_prune(self, config)

    async def prune(self, names: Sequence[str]) -> int:
        """Delete these queues and exchanges (as listed by `plan_prune`); returns how many."""
        return await declare.prune(self, names)

    async def delete_everything(self) -> None:
        """Delete every queue and exchange this prefix ever declared (tests, teardown)."""
        await declare.delete_everything(self)

    # --- publishing --------------------------------------------------------------------------

    async def publish(self, broker: str, events: Sequence[Event]) -> None:
        if not self._open or self._topology is None:
            raise BrokerUnavailable("the broker is closed")
        exchange = self._topology.exchanges.get(broker)
        if exchange is None:
            raise UnknownBroker(f"broker {broker} does not exist")
        if not events:
            return
        wires = [to_amqp(event) for event in events]
        if len(wires) == 1:
            await self._send(exchange, "", wires[0])
            return
        results = await asyncio.gather(
            *(self._send(exchange, "", wire) for wire in wires), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _publisher_channel(self) -> RawChannel:
        publisher = self._publisher
        if publisher is not None and not publisher.is_closed:
            return await publisher.get_underlay_channel()
        if not self._connected.is_set():
            raise BrokerUnavailable("not connected to RabbitMQ", retry_after=1.0)
        async with self._publisher_lock:
            if self._publisher is None or self._publisher.is_closed:
                self._publisher = await self._open_channel(confirms=True)
            return await self._publisher.get_underlay_channel()

    async def _send(
        self,
        exchange: str,
        routing_key: str,
        wire: WireMessage,
        *,
        mandatory: bool = False,
        persistent: bool = True,
    ) -> None:
        """Publish one persistent message and wait for its confirm (bounded)."""
        try:
            with _drops_as_errors():
                async with asyncio.timeout(self.publish_timeout):
                    raw = await self._publisher_channel()
                    # wait=False: queue the frame and await only the confirm, instead of holding
                    # the shared channel until the frame is written (~11% less CPU per publish)
                    await raw.basic_publish(  # type: ignore[call-arg]  # its abc lacks `wait`
                        wire.body,
                        exchange=exchange,
                        routing_key=routing_key,
                        properties=_properties(wire, persistent=persistent),
                        mandatory=mandatory,
                        wait=False,
                    )
        except BrokerError:
            raise
        except aiormq.exceptions.PublishError as exc:
            raise BrokerUnavailable(f"no queue took the message ({routing_key})") from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise BrokerUnavailable("RabbitMQ refused the message (nack)") from exc
        except TimeoutError as exc:
            raise BrokerUnavailable(
                f"RabbitMQ did not confirm within {self.publish_timeout:g}s"
            ) from exc
        except FAILURES as exc:
            raise BrokerUnavailable(f"RabbitMQ connection problem: {exc}") from exc

    async def _send_to_queue(self, queue: str, wire: WireMessage) -> None:
        await self._send("", queue, wire, mandatory=True)

    async def _requeue_later(self, queue: str, wire: WireMessage, delay: float) -> None:
        """Put `wire` back into `queue` after `delay` seconds, durably (a delay queue)."""
        bucket = delay_bucket(delay)
        if bucket == 0:
            await self._send_to_queue(queue, wire)
            return
        delayed = WireMessage(
            {**wire.headers, DELAY_HEADER: str(bucket)},
            wire.body,
            wire.content_type,
            wire.message_id,
        )
        await self._ensure_delay_queue(bucket)
        try:
            await self._send(self.names.delay_exchange, queue, delayed, mandatory=True)
        except BrokerUnavailable as exc:
            if not isinstance(exc.__cause__, aiormq.exceptions.PublishError):
                raise
            self._delay_queues.discard(bucket)  # deleted behind our back: declare it again
            await self._ensure_delay_queue(bucket)
            await self._send(self.names.delay_exchange, queue, delayed, mandatory=True)

    async def _ensure_delay_queue(self, bucket: int) -> None:
        if bucket in self._delay_queues:
            return
        async with self._delay_lock:
            if bucket in self._delay_queues:
                return
            name = self.names.delay_queue(bucket)
            try:
                async with _Admin(self) as admin:
                    raw = await admin.channel()
                    await raw.exchange_declare(
                        self.names.delay_exchange, exchange_type="headers", durable=True
                    )
                    await admin.declare_queue(name, delay_queue_arguments(bucket))
                    raw = await admin.channel()
                    await raw.queue_bind(
                        name,
                        self.names.delay_exchange,
                        routing_key="",
                        arguments=_table(delay_binding(bucket)),
                    )
                    await admin.append_registry([delay_queue_record(name)])
            except FAILURES as exc:
                raise BrokerUnavailable(f"cannot declare delay queue {name}: {exc}") from exc
            self._delay_queues.add(bucket)

    # --- consuming ---------------------------------------------------------------------------

    async def consume(self, trigger: TriggerSpec, handler: Handler) -> None:
        if not self._open:
            raise BrokerUnavailable("the broker is closed")
        plan = self._plan(trigger.key)
        if any(c.plan.trigger == trigger.key for c in self._consumers):
            raise BrokerError(f"trigger {trigger.key} is already consumed")
        consumer = _Consumer(self, plan, handler)
        consumer.start()
        self._consumers.append(consumer)

    async def retire(self, trigger: str, grace: float) -> None:
        consumer = next((c for c in self._consumers if c.plan.trigger == trigger), None)
        if consumer is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            if not consumer.inflight and await self._ready_count(consumer.queue) == 0:
                break
            await asyncio.sleep(0.1)
        self._consumers.remove(consumer)
        await consumer.stop()
        self._retired.append(consumer)

    async def _ready_count(self, queue: str) -> int | None:
        """Messages ready in `queue`, or None when that cannot be asked right now."""
        try:
            async with _Admin(self) as admin:
                raw = await admin.channel()
                declared = await raw.queue_declare(queue, passive=True)
        except BrokerError:
            return None
        return int(declared.message_count or 0)

    async def stop_consuming(self) -> None:
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(c.stop() for c in consumers))
        self._retired.extend(consumers)

    async def wait_subscribed(self, timeout: float) -> None:
        """Wait until every consumer is subscribed (tests, readiness after start)."""
        async with asyncio.timeout(timeout):
            for consumer in self._consumers:
                await consumer.subscribed.wait()

    # --- request-reply ---------------------------------------------------------------------

    async def listen_replies(self, replica: str, handler: ReplyHandler) -> None:
        """Receive replies for `replica`; returns once subscribed (within `connect_timeout`)."""
        if not self._open:
            raise BrokerUnavailable("the broker is closed")
        listener = _ReplyListener(self, self.names.reply_queue(replica), handler)
        listener.start()
        self._listeners.append(listener)
        try:
            await asyncio.wait_for(listener.subscribed.wait(), self.connect_timeout)
        except TimeoutError as exc:
            raise BrokerUnavailable(f"cannot listen for replies of {replica} yet") from exc

    async def send_reply(self, replica: str, event: Event) -> None:
        """Best effort: a transient message, dropped by RabbitMQ when the replica is gone."""
        if not self._open:
            raise BrokerUnavailable("the broker is closed")
        await self._send("", self.names.reply_queue(replica), to_amqp(event), persistent=False)

    # --- dead letters (brokers/rabbitmq/deadletters.py) -------------------------------------

    async def dead_letters(self, trigger: str, limit: int = 100) -> list[DeadLetter]:
        """Parked events, oldest first, without removing them."""
        return await deadletters.list_dead_letters(self, trigger, limit)

    async def remove_dead_letters(self, trigger: str, ids: Sequence[str]) -> int:
        return await deadletters.remove_dead_letters(self, trigger, ids)
