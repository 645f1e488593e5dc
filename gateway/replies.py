"""Request-reply (Knative RequestReply semantics): correlate a request with its reply.

A request gets `correlationid = <replica>:<random>`; whoever answers it (the dispatcher, for a
function's reply, or any client posting an event with `replyid`) routes the reply through the
broker to that replica, so the request may be published by one replica and its reply consumed
by another. The first reply wins; later ones are ignored.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Final

from brokers.event import Event

CORRELATION: Final = "correlationid"
REPLY_ID: Final = "replyid"


class ReplyHub:
    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._waiting: dict[str, asyncio.Future[Event]] = {}

    def new_correlation_id(self) -> str:
        return f"{self.replica}:{secrets.token_hex(12)}"

    def expect(self, correlation_id: str) -> asyncio.Future[Event]:
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = future
        return future

    def forget(self, correlation_id: str) -> None:
        self._waiting.pop(correlation_id, None)

    def deliver(self, event: Event) -> None:
        """Called for every reply routed to this replica."""
        reply_id = event.text(REPLY_ID)
        future = self._waiting.pop(reply_id, None) if reply_id else None
        if future is not None and not future.done():
            future.set_result(event)

    @property
    def pending(self) -> int:
        return len(self._waiting)
