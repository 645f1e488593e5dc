"""Mesh state: deduplication, the event log, replay targeting, and what functions are told.

`State` (base.py) is the port; `MemoryState` and `RedisState` implement it. `Ledger` is the one
place where the policies live, so they are the same on every backend:

- ingress dedup: an event whose (`source`, `id`) was accepted by the same broker within the
  broker's window (annotation `cemesh.dev/dedup-window`, ISO-8601 or seconds, default PT10M,
  "0" disables) is not published again; the sender still gets 202 and is told;
- the event log: every event the ingress accepted is appended to its broker's capped log
  (annotation `cemesh.dev/event-log-length`, default from the state URL's `log_maxlen`);
- delivery dedup: after a successful delivery the dispatcher marks (trigger, source, id); a
  redelivered message (RabbitMQ after a crash) that is already marked is acked, not delivered;
- replay targeting: an event carrying `cemeshtarget: ns/trigger` is delivered by that trigger
  only (the extension is removed before delivery); `cemeshreplay: <id>` makes a replayed copy a
  new delivery for the dedup marks.

Redis down: dedup and the log fail open (the event flows, a rate-limited warning is logged and
a counter in `Ledger.stats` counts it); docs/state.md has the table.
"""

from __future__ import annotations

from brokers.state.base import LogEntry, State, StateError, StateUnavailable
from brokers.state.ledger import (
    DEDUP_ANNOTATION,
    LOG_ANNOTATION,
    REPLAY_EXTENSION,
    TARGET_EXTENSION,
    Admission,
    BrokerPolicy,
    Ledger,
    broker_policies,
    check_state,
    duplicate_headers,
    make_ledger,
    target_extensions,
)
from brokers.state.memory import MemoryState
from brokers.state.options import StateOptions, function_env, make_state, state_options

__all__ = [
    "DEDUP_ANNOTATION",
    "LOG_ANNOTATION",
    "REPLAY_EXTENSION",
    "TARGET_EXTENSION",
    "Admission",
    "BrokerPolicy",
    "Ledger",
    "LogEntry",
    "MemoryState",
    "State",
    "StateError",
    "StateOptions",
    "StateUnavailable",
    "broker_policies",
    "check_state",
    "duplicate_headers",
    "function_env",
    "make_ledger",
    "make_state",
    "state_options",
    "target_extensions",
]
