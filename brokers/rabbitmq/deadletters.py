"""Dead letters on RabbitMQ: listing a trigger's dead-letter queue without consuming it, and
removing some or all of its messages.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiormq
from aiormq.abc import DeliveredMessage

from brokers.base import DeadLetter
from brokers.errors import InvalidEvent
from brokers.event import Event
from brokers.rabbitmq.admin import _Admin
from brokers.rabbitmq.connection import (
    UNDECODABLE_TYPE,
)
from brokers.rabbitmq.wire import (
    dead_letter_id,
    from_amqp,
    parked_at,
)

if TYPE_CHECKING:
    from brokers.rabbitmq.broker import RabbitBroker

log = logging.getLogger(__name__)


async def list_dead_letters(
    broker: RabbitBroker, trigger: str, limit: int = 100
) -> list[DeadLetter]:
    """Parked events, oldest first, without removing them.

    RabbitMQ cannot peek: the whole dead-letter queue is fetched unacknowledged on a private
    channel, which is then closed so RabbitMQ takes every message back. Taking messages
    back does not keep a quorum queue's order, so the order comes from the parking time
    each dead letter carries (`cemesh-parked-at`). While a listing runs, a concurrent one
    sees fewer messages.
    """
    queue = broker.names.dead_letter_queue(trigger)
    oldest: list[tuple[int, int, str, DeliveredMessage]] = []  # a max-heap of `limit`
    async with _Admin(broker) as admin:
        raw = await admin.channel()
        try:
            while True:
                got = await raw.basic_get(queue, no_ack=False)
                if got.delivery_tag is None:
                    break
                properties = got.header.properties
                ident = dead_letter_id(properties.message_id, properties.headers, got.body)
                key = parked_at(properties.headers)
                entry = (-key, -got.delivery_tag, ident, got)
                if len(oldest) < limit:
                    heapq.heappush(oldest, entry)
                elif limit > 0:
                    heapq.heappushpop(oldest, entry)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return []
    ordered = sorted(oldest, reverse=True)
    return [_dead_letter(trigger, queue, ident, got) for _, _, ident, got in ordered]


def _dead_letter(trigger: str, queue: str, ident: str, got: DeliveredMessage) -> DeadLetter:
    properties = got.header.properties
    try:
        event, _ = from_amqp(properties.headers, got.body, properties.content_type)
    except InvalidEvent as exc:
        event = Event(
            {
                "specversion": "1.0",
                "id": ident,
                "source": f"rabbitmq:{queue}",
                "type": UNDECODABLE_TYPE,
                "cemesherror": exc.message,
            },
            got.body or None,
        )
    return DeadLetter(ident, trigger, event)


async def remove_dead_letters(broker: RabbitBroker, trigger: str, ids: Sequence[str]) -> int:
    queue = broker.names.dead_letter_queue(trigger)
    async with _Admin(broker) as admin:
        raw = await admin.channel()
        try:
            if not ids:
                purged = await raw.queue_purge(queue)
                return int(purged.message_count or 0)
            wanted, removed = set(ids), 0
            while wanted:
                got = await raw.basic_get(queue, no_ack=False)
                tag = got.delivery_tag
                if tag is None:
                    break
                properties = got.header.properties
                ident = dead_letter_id(properties.message_id, properties.headers, got.body)
                if ident in wanted:
                    await raw.basic_ack(tag)
                    wanted.discard(ident)
                    removed += 1
            return removed
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
