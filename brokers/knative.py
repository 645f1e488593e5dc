"""Knative eventing semantics on events: ingress and reply stamping, the broker TTL, the
`knativeerror*` extensions of a dead letter, and request-reply correlation ids and routing.

Pure functions (but `route_reply`), shared by the ingress, the dispatcher and the admin API.
"""

from __future__ import annotations

import base64
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from brokers.base import Broker
from brokers.delivery import Destination
from brokers.errors import (
    BrokerError,
)
from brokers.event import Event

if TYPE_CHECKING:
    pass

from brokers.transport import Outcome

log = logging.getLogger(__name__)

TTL_ATTRIBUTE: Final = "knativebrokerttl"
ARRIVAL_ATTRIBUTE: Final = "knativearrivaltime"
DEFAULT_TTL: Final = 255
ERROR_DATA_LIMIT: Final = 1024
CORRELATION_ID: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]{0,62}):([0-9a-f]{32})")
"""`<replica>:<128 random bits in hex>`: what request-reply stamps as `correlationid`."""
REPLY_ORIGIN: Final = "cemeshreplyorigin"
"""Set on a reply routed to a replica: the broker it was published to (never delivered on)."""


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ingress_stamp(event: Event, arrival: str | None = None) -> Event:
    """What ingress adds: the arrival time, and the TTL when the sender set none."""
    changes: dict[str, str | int] = {ARRIVAL_ATTRIBUTE: arrival or now_rfc3339()}
    if TTL_ATTRIBUTE not in event.attributes:
        changes[TTL_ATTRIBUTE] = DEFAULT_TTL
    attributes = {**event.attributes, **changes}
    return Event(attributes, event.data)


def ttl_of(event: Event) -> int:
    """The event's remaining TTL (an unreadable value counts as exhausted)."""
    raw = event.get(TTL_ATTRIBUTE)
    if raw is None:
        return DEFAULT_TTL
    try:
        return int(raw)
    except ValueError:
        return 0


def reply_stamp(request: Event, reply: Event) -> Event | None:
    """A reply inherits the request's TTL minus one; None when the TTL is spent."""
    ttl = ttl_of(request) - 1
    if ttl <= 0:
        return None
    attributes = dict(reply.attributes)
    attributes[TTL_ATTRIBUTE] = ttl
    correlation = request.get("correlationid")
    if correlation is not None and "replyid" not in attributes:
        attributes["replyid"] = correlation
    attributes.pop(ARRIVAL_ATTRIBUTE, None)
    return Event(attributes, reply.data)


def reply_replica(event: Event) -> str | None:
    """The gateway replica a reply is addressed to, when `replyid` is one of our correlation
    ids (`<replica>:<32 hex digits>`); any other replyid is an ordinary extension, never routed,
    so its length or shape cannot fail a request after the event was published."""
    reply_id = event.text("replyid")
    match = CORRELATION_ID.fullmatch(reply_id) if reply_id else None
    return match.group(1) if match else None


async def route_reply(broker: Broker, event: Event, origin: str) -> None:
    """Hand a reply to the request-reply waiter of its replica (best effort), stamped with the
    broker (`namespace/name`) it was published to: the waiter takes replies from its own
    request's broker only, so one tenant cannot answer another's requests."""
    replica = reply_replica(event)
    if replica is not None:
        try:
            await broker.send_reply(replica, event.replace(**{REPLY_ORIGIN: origin}))
        except BrokerError as exc:
            log.warning("reply %s not routed to replica %s: %s", event.id, replica, exc)


def error_extensions(destination: Destination, outcome: Outcome) -> dict[str, str]:
    data = outcome.body[:ERROR_DATA_LIMIT] or outcome.error.encode()[:ERROR_DATA_LIMIT]
    extensions = {"knativeerrordest": dest_uri(destination)}
    if outcome.status:
        extensions["knativeerrorcode"] = str(outcome.status)
    if data:
        extensions["knativeerrordata"] = base64.b64encode(data).decode("ascii")
    return extensions


def dest_uri(destination: Destination) -> str:
    return destination.uri or f"function:{destination.function}"
