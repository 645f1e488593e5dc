"""The RabbitMQ broker (aio-pika): the only package that imports aio_pika and aiormq.

- `broker`: RabbitBroker, the Broker port (connection supervision, publish with confirms,
  topology reconciliation, retries through delay queues, dead letters, request-reply);
- `consumers`: per-queue subscriptions that re-subscribe after every loss;
- `admin`: the channel for declarations, the registry stream and dead-letter queues;
- `connection`: what counts as a lost connection, and small helpers at the client boundary;
- `wire`, `topology`, `registry`: sans-IO: the message shape, the names and bindings a config
  needs, and the record of what was declared (unit tested without a server).

`RabbitBroker` is re-exported lazily, so the sans-IO modules import without aio-pika loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brokers.rabbitmq.broker import RabbitBroker

__all__ = ["RabbitBroker"]


def __getattr__(name: str) -> Any:
    if name == "RabbitBroker":
        from brokers.rabbitmq.broker import RabbitBroker

        return RabbitBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
