"""The Broker port: what the gateway and the dispatcher need from a message broker.

Two adapters implement it: `memory.MemoryBroker` (the embedded default) and
`rabbitmq.RabbitBroker`. Both pass one contract suite (tests/contract). Delivery semantics
(filters beyond exact, HTTP, retries, replies, dead letters) live in `dispatch`, above the port,
so both brokers behave the same; the port only has to keep messages, redeliver them after a
delay with their attempt count, and park dead letters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from brokers.event import Event
from brokers.triggers import MeshConfig, TriggerSpec


class Message(Protocol):
    """One event queued for one trigger."""

    @property
    def event(self) -> Event: ...

    @property
    def attempt(self) -> int:
        """Delivery attempts already made and failed (0 on the first delivery)."""
        ...

    @property
    def matched(self) -> bool:
        """True when the broker already evaluated the trigger's whole filter."""
        ...

    async def ack(self) -> None:
        """Done with it: delivered, or dead-lettered somewhere durable."""

    async def retry(self, delay: float, event: Event | None = None) -> None:
        """Redeliver after `delay` seconds with `attempt + 1` (optionally a changed event)."""

    async def dead_letter(self, event: Event) -> None:
        """Park the event in the trigger's own dead-letter store."""

    async def release(self) -> None:
        """Give it back unprocessed (shutdown): it will be delivered again, same attempt."""


Handler = Callable[[Message], Awaitable[None]]
ReplyHandler = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A parked event and where it stands in its trigger's dead-letter store."""

    id: str
    trigger: str
    event: Event


@runtime_checkable
class Broker(Protocol):
    async def open(self, config: MeshConfig) -> None:
        """Connect and reconcile the topology (exchanges, queues) with the config."""

    async def reconcile(self, config: MeshConfig) -> None:
        """Bring the opened topology to `config` while running: new brokers and triggers are
        declared and bound (new bindings first, then stale ones removed); a removed trigger's
        queue is unbound, so it stops filling, and kept with its dead letters until pruned."""

    async def close(self) -> None: ...

    @property
    def ready(self) -> bool:
        """Can publish right now (drives /readyz)."""
        ...

    async def publish(self, broker: str, events: Sequence[Event]) -> None:
        """Durably accept events into broker `namespace/name`, all or none.

        Raises UnknownBroker, BrokerUnavailable.
        """

    async def consume(self, trigger: TriggerSpec, handler: Handler) -> None:
        """Start delivering the trigger's messages to `handler`, up to its parallelism."""

    async def stop_consuming(self) -> None:
        """Stop taking new messages; in-flight handlers are left to finish."""

    async def retire(self, trigger: str, grace: float) -> None:
        """Stop consuming trigger `namespace/name` once what its queue holds was handled (or
        after `grace` seconds; what is left stays queued, never dropped)."""

    async def dead_letters(self, trigger: str, limit: int = 100) -> list[DeadLetter]:
        """Parked events of trigger `namespace/name`, oldest first."""
        ...

    async def remove_dead_letters(self, trigger: str, ids: Sequence[str]) -> int:
        """Delete parked events (all when `ids` is empty); returns how many."""
        ...

    async def listen_replies(self, replica: str, handler: ReplyHandler) -> None:
        """Receive reply events addressed to this gateway replica (request-reply)."""

    async def send_reply(self, replica: str, event: Event) -> None:
        """Route a reply to the replica waiting for it; best effort, no error if it is gone."""
