"""The aio-pika boundary shared by the broker, its consumers and its admin channel: which
client errors count as a lost connection, message properties, and small waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterator, Mapping
from typing import Any, Final

import aiormq
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from brokers.rabbitmq.wire import (
    PERSISTENT,
    WireMessage,
)

log = logging.getLogger(__name__)

FAILURES: Final = (*CONNECTION_EXCEPTIONS, TimeoutError)
MAX_PREFETCH: Final = 65535
TRANSIENT: Final = 1
MIN_BACKOFF: Final = 0.1
UNDECODABLE_TYPE: Final = "dev.cemesh.undecodable"


def _properties(wire: WireMessage, *, persistent: bool = True) -> aiormq.spec.Basic.Properties:
    return aiormq.spec.Basic.Properties(
        content_type=wire.content_type,
        headers=wire.headers,  # type: ignore[arg-type]  # a FieldTable accepts these values
        delivery_mode=PERSISTENT if persistent else TRANSIENT,
        message_id=wire.message_id,
    )


def _table(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """An AMQP field table from any mapping (aiormq wants a plain dict)."""
    return dict(arguments)


def _resolve(future: asyncio.Future[None], *_args: object) -> None:
    if not future.done():
        future.set_result(None)


@contextlib.contextmanager
def _drops_as_errors() -> Iterator[None]:
    """Turn the CancelledError aiormq raises into an operation whose connection it dropped
    (e.g. a stuck connection) into a ConnectionError; a real cancellation stays one."""
    try:
        yield
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        raise ConnectionError("the RabbitMQ connection was dropped under this operation") from exc


async def _first(*awaitables: Awaitable[Any]) -> None:
    """Wait until any of `awaitables` completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
