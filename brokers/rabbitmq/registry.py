"""The topology registry: what cemesh declared under a prefix, recorded in a RabbitMQ stream.

AMQP cannot list queues or bindings, yet reconciling needs the bindings a trigger's queue had
before and `prune` needs the queues of triggers that are gone: so declarations are appended to
`{prefix}._topology` as JSON records, and the state is their fold (sans-IO here).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from brokers.rabbitmq.topology import Binding, QueuePlan, Topology

# --- the topology registry -----------------------------------------------------------------
#
# AMQP cannot list queues or bindings, yet reconciling needs the bindings a trigger's queue had
# before (to remove stale ones) and `prune` needs the queues of triggers that are gone. So
# cemesh appends what it declares to a stream, `{prefix}._topology`, as JSON records; a stream
# is read from its start by any number of readers without consuming it. The state is the fold
# of the records, the latest record of a name winning.


@dataclass(frozen=True, slots=True)
class QueueRecord:
    name: str
    trigger: str
    dead_letter_queue: str
    bindings: tuple[Binding, ...]


@dataclass(slots=True)
class RegistryState:
    queues: dict[str, QueueRecord] = field(default_factory=dict)
    exchanges: dict[str, str] = field(default_factory=dict)
    delay_queues: set[str] = field(default_factory=set)


def queue_record(plan: QueuePlan) -> bytes:
    return _dump(
        {
            "kind": "queue",
            "name": plan.name,
            "trigger": plan.trigger,
            "dlq": plan.dead_letter_queue,
            "bindings": [plan.binding.to_json()],
        }
    )


def exchange_record(name: str, broker_key: str) -> bytes:
    return _dump({"kind": "exchange", "name": name, "broker": broker_key})


def delay_queue_record(name: str) -> bytes:
    return _dump({"kind": "delay", "name": name})


def deleted_record(name: str) -> bytes:
    return _dump({"kind": "deleted", "name": name})


def sync_record(nonce: str) -> bytes:
    return _dump({"kind": "sync", "nonce": nonce})


def sync_nonce(record: bytes) -> str | None:
    """The nonce of a sync record (how a reader knows it has read to the end), else None."""
    if b'"sync"' not in record:
        return None
    try:
        value = json.loads(record)
    except ValueError:
        return None
    nonce = value.get("nonce") if isinstance(value, dict) else None
    return nonce if isinstance(nonce, str) else None


def fold_records(records: Iterable[bytes]) -> RegistryState:
    """The registry state after these records; unreadable records are skipped."""
    state = RegistryState()
    for raw in records:
        try:
            record = json.loads(raw)
            kind, name = record["kind"], record.get("name")
            if kind == "queue":
                bindings = tuple(
                    Binding(str(b["exchange"]), {str(k): str(v) for k, v in b["arguments"].items()})
                    for b in record["bindings"]
                )
                state.queues[name] = QueueRecord(name, record["trigger"], record["dlq"], bindings)
            elif kind == "exchange":
                state.exchanges[name] = str(record["broker"])
            elif kind == "delay":
                state.delay_queues.add(name)
            elif kind == "deleted":
                state.queues.pop(name, None)
                state.exchanges.pop(name, None)
                state.delay_queues.discard(name)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return state


def stale_bindings(state: RegistryState, plan: QueuePlan) -> list[Binding]:
    """Bindings the registry knows for the plan's queue that the config no longer wants."""
    record = state.queues.get(plan.name)
    if record is None:
        return []
    return [b for b in record.bindings if b != plan.binding]


def orphaned_queues(state: RegistryState, topology: Topology) -> list[QueueRecord]:
    """Queues the registry knows with bindings whose trigger the config no longer has: they
    are unbound (so they stop filling) and kept, with their dead letters, until pruned."""
    wanted = {plan.name for plan in topology.queues.values()}
    return [r for name, r in sorted(state.queues.items()) if name not in wanted and r.bindings]


def unbound_queue_record(record: QueueRecord) -> bytes:
    """The registry record of a kept queue that has no bindings any more."""
    return _dump(
        {
            "kind": "queue",
            "name": record.name,
            "trigger": record.trigger,
            "dlq": record.dead_letter_queue,
            "bindings": [],
        }
    )


def prune_candidates(state: RegistryState, topology: Topology) -> list[str]:
    """Queues (and their dead-letter queues) of triggers, and exchanges of brokers, that the
    registry knows under this prefix but the config no longer has."""
    wanted_queues = {plan.name for plan in topology.queues.values()}
    wanted_exchanges = set(topology.exchanges.values())
    names: list[str] = []
    for name, record in sorted(state.queues.items()):
        if name not in wanted_queues:
            names.extend((name, record.dead_letter_queue))
    names.extend(sorted(n for n in state.exchanges if n not in wanted_exchanges))
    return names


def _dump(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
