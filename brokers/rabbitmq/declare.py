"""Declaring a mesh's topology on RabbitMQ and pruning what it no longer needs.

Reconciling declares every exchange, queue and binding the config needs (new bindings first),
then removes the bindings the registry says a queue had before, and unbinds the queues of
triggers that are gone (kept, with their dead letters, until `cemesh topology prune`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aio_pika.abc import AbstractConnection

from brokers.errors import BrokerError
from brokers.rabbitmq.admin import _Admin
from brokers.rabbitmq.connection import (
    _table,
)
from brokers.rabbitmq.registry import (
    RegistryState,
    deleted_record,
    exchange_record,
    orphaned_queues,
    prune_candidates,
    queue_record,
    stale_bindings,
    unbound_queue_record,
)
from brokers.rabbitmq.topology import (
    DEAD_LETTER_QUEUE_ARGUMENTS,
    plan_topology,
)
from brokers.triggers import MeshConfig

if TYPE_CHECKING:
    from brokers.rabbitmq.broker import RabbitBroker

log = logging.getLogger(__name__)


async def declare(broker: RabbitBroker, connection: AbstractConnection, *, full: bool) -> None:
    """Declare what the config needs. `full` also reads the registry, removes stale
    bindings and records changes (on open); a reconnection only re-declares."""
    topology = broker._topology
    assert topology is not None  # set by open()
    async with _Admin(broker, connection) as admin:
        raw = await admin.channel()
        await raw.queue_declare(
            broker.names.registry, durable=True, arguments={"x-queue-type": "stream"}
        )
        state = await admin.read_registry() if full else RegistryState()
        records: list[bytes] = []
        raw = await admin.channel()
        await raw.exchange_declare(
            broker.names.delay_exchange, exchange_type="headers", durable=True
        )
        for broker_key, name in topology.exchanges.items():
            await raw.exchange_declare(name, exchange_type="headers", durable=True)
            if full and state.exchanges.get(name) != broker_key:
                records.append(exchange_record(name, broker_key))
        for plan in topology.queues.values():
            await admin.declare_queue(plan.name, plan.arguments)
            await admin.declare_queue(plan.dead_letter_queue, DEAD_LETTER_QUEUE_ARGUMENTS)
            raw = await admin.channel()
            binding = plan.binding
            await raw.queue_bind(
                plan.name, binding.exchange, routing_key="", arguments=_table(binding.arguments)
            )
            if not full:
                continue
            for stale in stale_bindings(state, plan):
                await admin.unbind(plan.name, stale.exchange, _table(stale.arguments))
                log.info("removed stale binding of %s: %s", plan.name, stale.arguments)
            known = state.queues.get(plan.name)
            if known is None or known.bindings != (binding,):
                records.append(queue_record(plan))
        if full:
            for orphan in orphaned_queues(state, topology):
                for stale in orphan.bindings:
                    await admin.unbind(orphan.name, stale.exchange, _table(stale.arguments))
                records.append(unbound_queue_record(orphan))
                log.info(
                    "unbound %s: trigger %s is gone (the queue is kept until "
                    "`cemesh topology prune`)",
                    orphan.name,
                    orphan.trigger,
                )
        await admin.append_registry(records)


async def plan_prune(broker: RabbitBroker, config: MeshConfig | None = None) -> list[str]:
    """Queues and exchanges under this prefix that `config` (default: the opened one) no
    longer needs: what `cemesh topology prune` lists before deleting anything."""
    topology = plan_topology(config, broker.names) if config else broker._topology
    if topology is None:
        raise BrokerError("plan_prune needs a config (or an opened broker)")
    async with _Admin(broker) as admin:
        return prune_candidates(await admin.read_registry(), topology)


async def prune(broker: RabbitBroker, names: Sequence[str]) -> int:
    """Delete these queues and exchanges (as listed by `plan_prune`); returns how many.

    Only names the registry knows under this prefix and the opened config does not use are
    accepted: a typo cannot delete someone else's queue.
    """
    async with _Admin(broker) as admin:
        state = await admin.read_registry()
        queues = set(state.queues) | {r.dead_letter_queue for r in state.queues.values()}
        in_use: set[str] = set()
        if broker._topology is not None:
            in_use = set(broker._topology.exchanges.values())
            for plan in broker._topology.queues.values():
                in_use.update((plan.name, plan.dead_letter_queue))
        known = queues | set(state.exchanges)
        refused = [n for n in names if n in in_use or n not in known]
        if refused:
            raise BrokerError(
                f"not prunable under prefix {broker.names.prefix}: {', '.join(refused)}"
            )
        for name in names:
            raw = await admin.channel()
            if name in queues:
                await raw.queue_delete(name)
            else:
                await raw.exchange_delete(name)
        await admin.append_registry([deleted_record(n) for n in names])
    return len(names)


async def delete_everything(broker: RabbitBroker) -> None:
    """Delete every queue and exchange this prefix ever declared (tests, teardown)."""
    async with _Admin(broker) as admin:
        state = await admin.read_registry()
        queues = set(state.delay_queues)
        for record in state.queues.values():
            queues.update((record.name, record.dead_letter_queue))
        if broker._topology is not None:
            for plan in broker._topology.queues.values():
                queues.update((plan.name, plan.dead_letter_queue))
        exchanges = {*state.exchanges, broker.names.delay_exchange}
        if broker._topology is not None:
            exchanges.update(broker._topology.exchanges.values())
        for name in [*sorted(queues), broker.names.registry]:
            raw = await admin.channel()
            await raw.queue_delete(name)
        for name in sorted(exchanges):
            raw = await admin.channel()
            await raw.exchange_delete(name)
