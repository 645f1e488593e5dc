"""Request-reply (Knative RequestReply semantics): correlate a request with its reply.

A request gets `correlationid = <replica>:<128 random bits>`; whoever answers it (the
dispatcher, for a function's reply, or any client posting an event with `replyid`) routes the
reply through the broker to that replica, so the request may be published by one replica and
its reply consumed by another. The first reply wins; later ones are ignored.

Tenancy: a waiter remembers the broker its request was published to, and a routed reply carries
the broker it was published to (`REPLY_ORIGIN`, stamped by the router, never by the sender). A
reply from any other broker is ignored, so a client of namespace A who learnt B's correlation id
cannot answer B's request.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Final

from brokers.event import Event
from brokers.knative import REPLY_ORIGIN

CORRELATION: Final = "correlationid"
REPLY_ID: Final = "replyid"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Waiter:
    broker: str
    future: asyncio.Future[Event]


class ReplyHub:
    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._waiting: dict[str, _Waiter] = {}
        self.foreign = 0  # replies refused because they came from another broker

    def new_correlation_id(self) -> str:
        return f"{self.replica}:{secrets.token_hex(16)}"

    def expect(self, correlation_id: str, broker: str) -> asyncio.Future[Event]:
        """A future for the reply to a request published to `broker` (`namespace/name`)."""
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = _Waiter(broker, future)
        return future

    def forget(self, correlation_id: str) -> None:
        self._waiting.pop(correlation_id, None)

    def deliver(self, event: Event) -> None:
        """Called for every reply routed to this replica."""
        reply_id = event.text(REPLY_ID) or ""
        waiter = self._waiting.get(reply_id)
        if waiter is None or waiter.future.done():
            return
        origin = event.text(REPLY_ORIGIN)
        if origin != waiter.broker:
            self.foreign += 1
            log.warning(
                "reply from broker %s ignored: the request went to %s",
                origin or "(unknown)",
                waiter.broker,
                extra={"ce_id": event.id, "ce_source": event.source},
            )
            return
        del self._waiting[reply_id]
        waiter.future.set_result(event.replace(**{REPLY_ORIGIN: None}))
