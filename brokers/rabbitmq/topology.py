"""The RabbitMQ objects a mesh configuration needs, named and planned: sans-IO.

One headers exchange per broker, one quorum queue (and dead-letter queue) per trigger, bound
with the trigger's exact attributes; delay queues for retries. Pure functions, so the names,
arguments and bindings (a contract with RabbitMQ and its operators) are unit tested without a
server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from brokers.errors import ConfigError
from brokers.filters import Filter
from brokers.rabbitmq.wire import ATTRIBUTE_PREFIX, CONTENT_TYPE_ATTRIBUTE, DELAY_HEADER
from brokers.triggers import MeshConfig, TriggerSpec

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
