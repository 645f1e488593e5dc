"""The Ledger: the state policies, the same on every backend (see the package docstring):
ingress dedup (claim after confirm), the event log, delivery marks, replay targeting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Final
from urllib.parse import quote

from brokers.base import Broker, Message
from brokers.delivery import parse_duration
from brokers.errors import ConfigError
from brokers.event import Event
from brokers.state.base import (
    DEFAULT_LOG_LENGTH,
    State,
    StateUnavailable,
    event_key,
)
from brokers.state.options import make_state, state_options
from brokers.triggers import MeshConfig, TriggerSpec

log = logging.getLogger(__name__)

DEDUP_ANNOTATION: Final = "cemesh.dev/dedup-window"
LOG_ANNOTATION: Final = "cemesh.dev/event-log-length"
DEFAULT_DEDUP_WINDOW: Final = 600.0
TARGET_EXTENSION: Final = "cemeshtarget"
REPLAY_EXTENSION: Final = "cemeshreplay"
DEDUP: Final = "dedup"
DELIVERED: Final = "delivered"
WARN_EVERY: Final = 10.0
IDS_HEADER_LIMIT: Final = 4096
_ID_SAFE: Final = "!#$&'()*+-./:;=?@_~"


@dataclass(frozen=True, slots=True)
class BrokerPolicy:
    dedup_window: float = DEFAULT_DEDUP_WINDOW
    log_length: int = DEFAULT_LOG_LENGTH


def broker_policies(
    config: MeshConfig, default_log_length: int = DEFAULT_LOG_LENGTH
) -> dict[str, BrokerPolicy]:
    """Each broker's dedup window and log length; ConfigError names a bad annotation."""
    policies: dict[str, BrokerPolicy] = {}
    for key, broker in config.brokers.items():
        label = f"Broker {broker.name}"
        window, length = DEFAULT_DEDUP_WINDOW, default_log_length
        raw = broker.annotations.get(DEDUP_ANNOTATION)
        if raw is not None:
            try:
                window = _seconds(raw)
            except ValueError as exc:
                raise ConfigError(broker.origin, label, f"{DEDUP_ANNOTATION}: {exc}") from None
        raw = broker.annotations.get(LOG_ANNOTATION)
        if raw is not None:
            if not raw.strip().isdigit():
                raise ConfigError(
                    broker.origin, label, f"{LOG_ANNOTATION} must be a non-negative integer"
                )
            length = int(raw)
        policies[key] = BrokerPolicy(window, length)
    return policies


def check_state(url: str, config: MeshConfig) -> None:
    """Before anything starts: a bad state URL or state annotation is one ConfigError line."""
    try:
        options = state_options(url)
    except ValueError as exc:
        raise ConfigError("--state (CEMESH_STATE_URL)", None, str(exc)) from None
    broker_policies(config, options.log_length)


def _seconds(text: str) -> float:
    """Seconds from "600", "0" or an ISO-8601 duration ("PT10M")."""
    try:
        value = float(text)
    except ValueError:
        return parse_duration(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"'{text}' must be a non-negative number of seconds")
    return value


@dataclass(frozen=True, slots=True)
class Admission:
    """What the ingress did with a request's events."""

    published: list[Event]
    duplicates: list[Event]


def duplicate_headers(admission: Admission) -> list[tuple[bytes, bytes]]:
    """When some events of a request were duplicates: `cemesh-duplicate: true|partial` (all or
    some), `cemesh-duplicate-count`, and `cemesh-duplicate-ids` (percent-encoded, comma
    separated, cut at about 4 KiB so the response stays within HTTP clients' header limits)."""
    if not admission.duplicates:
        return []
    verdict = b"partial" if admission.published else b"true"
    ids: list[str] = []
    size = 0
    for event in admission.duplicates:
        encoded = quote(event.id, safe=_ID_SAFE)
        size += len(encoded) + 1
        if size > IDS_HEADER_LIMIT:
            break
        ids.append(encoded)
    return [
        (b"cemesh-duplicate", verdict),
        (b"cemesh-duplicate-count", str(len(admission.duplicates)).encode()),
        (b"cemesh-duplicate-ids", ",".join(ids).encode("ascii")),
    ]


@dataclass(slots=True)
class LedgerStats:
    """Counters for metrics and `GET /admin/state`."""

    duplicates: int = 0
    logged: int = 0
    delivery_skipped: int = 0
    off_target: int = 0
    dedup_unavailable: int = 0
    log_unavailable: int = 0
    delivery_check_unavailable: int = 0
    delivery_mark_unavailable: int = 0


@dataclass(slots=True)
class Ledger:
    """The mesh's memory, used by the ingress (publish) and the dispatcher (deliveries)."""

    state: State
    config: MeshConfig
    default_log_length: int = DEFAULT_LOG_LENGTH
    stats: LedgerStats = field(default_factory=LedgerStats)
    policies: dict[str, BrokerPolicy] = field(init=False)
    _warned: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.policies = broker_policies(self.config, self.default_log_length)

    def use(self, config: MeshConfig) -> None:
        """Follow a new configuration (its brokers' windows and log lengths)."""
        self.policies = broker_policies(config, self.default_log_length)
        self.config = config

    def policy(self, broker: str) -> BrokerPolicy:
        return self.policies.get(broker) or BrokerPolicy(log_length=self.default_log_length)

    async def seen(self, broker: str, source: str, id: str, window: float) -> bool:
        """Check-and-set: True when (source, id) was already accepted by `broker` within
        `window` seconds; otherwise records it and returns False. Raises StateUnavailable."""
        (fresh,) = await self.state.claim(DEDUP, broker, [event_key(source, id)], window)
        return not fresh

    # ingress

    async def publish(
        self,
        broker: Broker,
        key: str,
        events: Sequence[Event],
        confirmed: Callable[[list[Event]], None] | None = None,
    ) -> Admission:
        """Dedup, publish what is new (raises what `broker.publish` raises), then record it.

        Claim after confirm: an event's dedup mark is written only once the broker confirmed
        its publish, so a "duplicate" answer always names an event that is in the broker. A
        crash between the confirm and the claim costs a second publish of that event on the
        client's retry (at-least-once, as Knative promises), never a lost one. Why not a claim
        that expires unless confirmed: a retry arriving while the first publish is in flight
        would still need an answer, and "duplicate" there is the very lie this avoids.
        """
        policy = self.policy(key)
        published, duplicates, keys = await self._admit(key, events, policy.dedup_window)
        if published:
            await broker.publish(key, published)
            if confirmed is not None:  # before the record: a delivery may already be under way
                confirmed(published)
            await asyncio.shield(self._record(key, keys, published, policy))
        self.stats.duplicates += len(duplicates)
        return Admission(published, duplicates)

    async def _admit(
        self, key: str, events: Sequence[Event], window: float
    ) -> tuple[list[Event], list[Event], list[str]]:
        """(to publish, duplicates, dedup keys of those to publish)."""
        # Request-reply requests are exempt: a retried request must get its reply.
        checked = [i for i, e in enumerate(events) if "correlationid" not in e.attributes]
        if window <= 0 or not checked:
            return list(events), [], []
        keys = [event_key(events[i].source, events[i].id) for i in checked]
        try:
            present = await self.state.present(DEDUP, key, keys)
        except StateUnavailable as exc:
            self.stats.dedup_unavailable += 1
            self._warn("dedup", f"dedup skipped (fail open): {exc}")
            return list(events), [], []
        duplicate = [False] * len(events)
        fresh: list[str] = []
        batch: set[str] = set()
        for index, dedup_key, seen in zip(checked, keys, present, strict=True):
            if seen or dedup_key in batch:  # the same event twice in one batch: once
                duplicate[index] = True
            else:
                batch.add(dedup_key)
                fresh.append(dedup_key)
        published = [e for e, dup in zip(events, duplicate, strict=True) if not dup]
        duplicates = [e for e, dup in zip(events, duplicate, strict=True) if dup]
        return published, duplicates, fresh

    async def _record(
        self, key: str, claims: list[str], events: list[Event], policy: BrokerPolicy
    ) -> None:
        """After the confirm: the dedup claims and the event log, concurrently."""
        await asyncio.gather(
            self._claim(key, claims, policy.dedup_window), self._log(key, events, policy.log_length)
        )

    async def _claim(self, key: str, claims: list[str], window: float) -> None:
        if not claims:
            return
        try:
            await self.state.claim(DEDUP, key, claims, window)
        except StateUnavailable as exc:
            self.stats.dedup_unavailable += 1
            self._warn("dedup-claim", f"dedup claims not recorded: {exc}")

    async def _log(self, key: str, events: list[Event], length: int) -> None:
        if length <= 0:
            return
        try:
            await self.state.append(key, events, length)
        except StateUnavailable as exc:
            self.stats.log_unavailable += 1
            self._warn("log", f"event log append skipped: {exc}")
            return
        self.stats.logged += len(events)

    # delivery

    async def before_delivery(self, trigger: TriggerSpec, message: Message) -> Event | None:
        """The event to deliver, or None when this trigger must not deliver it (ack it)."""
        event = message.event
        target = event.get(TARGET_EXTENSION)
        if target is not None:
            if str(target) != trigger.key:
                self.stats.off_target += 1
                return None
            event = event.replace(**{TARGET_EXTENSION: None})
        window = self.policy(trigger.broker_key).dedup_window
        if window <= 0 or getattr(message, "redelivered", True) is False:
            return event
        try:
            done = await self.state.exists(DELIVERED, trigger.key, _delivery_key(event))
        except StateUnavailable as exc:
            self.stats.delivery_check_unavailable += 1
            self._warn("delivered-check", f"delivery dedup skipped (fail open): {exc}")
            return event
        if done:
            self.stats.delivery_skipped += 1
            log.info(
                "already delivered, not delivered again",
                extra={"trigger": trigger.key, "ce_id": event.id, "ce_source": event.source},
            )
            return None
        return event

    async def delivered(self, trigger: TriggerSpec, event: Event) -> None:
        """Remember a successful delivery (before the ack, so a lost ack is covered)."""
        window = self.policy(trigger.broker_key).dedup_window
        if window <= 0:
            return
        try:
            await self.state.mark(DELIVERED, trigger.key, _delivery_key(event), window)
        except StateUnavailable as exc:
            self.stats.delivery_mark_unavailable += 1
            self._warn("delivered-mark", f"delivery not recorded: {exc}")

    def snapshot(self) -> dict[str, int]:
        return asdict(self.stats)

    def _warn(self, what: str, message: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(what, -WARN_EVERY) >= WARN_EVERY:
            self._warned[what] = now
            log.warning("state: %s", message)


def _delivery_key(event: Event) -> str:
    return event_key(event.source, event.id, event.text(REPLAY_EXTENSION) or "")


def make_ledger(url: str, config: MeshConfig, state: State | None = None) -> Ledger:
    """The ledger for a state URL (or an injected State, e.g. in tests)."""
    options = state_options(url)
    return Ledger(state or make_state(url), config, options.log_length)


def target_extensions(trigger: str | None, replay: str) -> Mapping[str, str]:
    """Extensions of a replayed event: its replay id, and its only trigger when targeted."""
    extensions = {REPLAY_EXTENSION: replay}
    if trigger is not None:
        extensions[TARGET_EXTENSION] = trigger
    return extensions
