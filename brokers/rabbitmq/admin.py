"""The admin channel: topology declarations, the registry stream and dead-letter queues, on
the broker's connection or a short-lived one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import AbstractChannel as RawChannel
from aiormq.abc import DeliveredMessage

from brokers.errors import BrokerError, BrokerUnavailable
from brokers.rabbitmq.connection import (
    FAILURES,
    _table,
)
from brokers.rabbitmq.registry import (
    RegistryState,
    fold_records,
    sync_nonce,
    sync_record,
)
from brokers.rabbitmq.wire import (
    PERSISTENT,
    new_message_id,
)

if TYPE_CHECKING:
    from brokers.rabbitmq.broker import RabbitBroker

log = logging.getLogger(__name__)


class _Admin:
    """A confirm-mode channel for topology and dead-letter work, reopened after a channel
    error; on the broker's connection, or a short-lived one when the broker is not open."""

    def __init__(self, broker: RabbitBroker, connection: AbstractConnection | None = None) -> None:
        self.broker = broker
        self.connection = connection
        self._own = False
        self._channel: AbstractChannel | None = None

    async def __aenter__(self) -> _Admin:
        if self.connection is None:
            if self.broker._connected.is_set() and self.broker._connection is not None:
                self.connection = self.broker._connection
            else:
                try:
                    self.connection = await self.broker._new_connection()
                except FAILURES as exc:
                    raise BrokerUnavailable(f"RabbitMQ is unreachable: {exc}") from exc
                self._own = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        with contextlib.suppress(*FAILURES):
            if self._channel is not None and not self._channel.is_closed:
                await self._channel.close()
            if self._own and self.connection is not None:
                await self.connection.close()
        # translate client failures at the boundary (a dropped connection included)
        if exc is None or isinstance(exc, BrokerError):
            return
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is None or task.cancelling():
                return
        elif not isinstance(exc, FAILURES):
            return
        raise BrokerUnavailable(f"RabbitMQ operation failed: {exc or type(exc).__name__}") from exc

    async def channel(self) -> RawChannel:
        if self._channel is None or self._channel.is_closed:
            assert self.connection is not None
            self._channel = await self.broker._open_channel(
                confirms=True, connection=self.connection
            )
        return await self._channel.get_underlay_channel()

    async def declare_queue(self, name: str, arguments: Mapping[str, Any]) -> None:
        """Declare a durable queue; one that exists with other arguments is kept as it is.

        Queue arguments cannot change (e.g. parallelism moved between 1 and more): the queue
        keeps working with its old arguments, and the warning says how to apply the change.
        """
        raw = await self.channel()
        try:
            await raw.queue_declare(name, durable=True, arguments=_table(arguments))
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            log.warning(
                "queue %s exists with other arguments (%s); keeping it. To recreate it: drain "
                "it, remove its trigger, run `cemesh topology prune`, then add the trigger back",
                name,
                exc,
            )
            raw = await self.channel()
            await raw.queue_declare(name, passive=True)

    async def unbind(self, queue: str, exchange: str, arguments: dict[str, Any]) -> None:
        raw = await self.channel()
        with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):
            await raw.queue_unbind(queue, exchange, routing_key="", arguments=arguments)

    async def append_registry(self, records: Sequence[bytes]) -> None:
        if not records:
            return
        raw = await self.channel()
        properties = aiormq.spec.Basic.Properties(delivery_mode=PERSISTENT)
        await asyncio.gather(
            *(
                raw.basic_publish(
                    r, routing_key=self.broker.names.registry, properties=properties, mandatory=True
                )
                for r in records
            )
        )

    async def read_registry(self) -> RegistryState:
        """Read the registry stream from its start up to a sync record written just before."""
        nonce = new_message_id()
        await self.append_registry([sync_record(nonce)])
        assert self.connection is not None
        reader = await self.broker._open_channel(confirms=False, connection=self.connection)
        try:
            raw = await reader.get_underlay_channel()
            await raw.basic_qos(prefetch_count=1000)
            records: list[bytes] = []
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            async def on_record(message: DeliveredMessage) -> None:
                records.append(message.body)  # before any await: keeps the stream's order
                if sync_nonce(message.body) == nonce and not done.done():
                    done.set_result(None)
                if message.delivery_tag is not None:
                    await raw.basic_ack(message.delivery_tag)

            await raw.basic_consume(
                self.broker.names.registry, on_record, arguments={"x-stream-offset": "first"}
            )
            await asyncio.wait_for(asyncio.shield(done), self.broker.publish_timeout * 2)
        finally:
            with contextlib.suppress(*FAILURES):
                await reader.close()
        return fold_records(records)
