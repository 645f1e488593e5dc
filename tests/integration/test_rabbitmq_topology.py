"""RabbitMQ topology against the real server: names, bindings, reconciliation, prune.

What RabbitMQ holds is read back with `rabbitmqctl`, independently of the adapter.
"""

from __future__ import annotations

import pytest

from brokers.errors import BrokerError
from tests.contract.conftest import (
    BROKER,
    Fleet,
    Inbox,
    amqp_url,
    event,
    mesh,
    rabbitmqctl,
    trigger,
    unique_prefix,
)

pytestmark = pytest.mark.connected


async def queues(prefix: str) -> dict[str, str]:
    """Queue name -> its arguments, as rabbitmqctl prints them, for this prefix."""
    listing = await rabbitmqctl("--no-table-headers", "list_queues", "name", "arguments")
    rows = (line.split("\t", 1) for line in listing.splitlines() if line.startswith(prefix))
    return {row[0]: row[1] for row in rows}


async def bindings(prefix: str) -> set[tuple[str, str, str]]:
    """(exchange, queue, arguments) of the bindings from this prefix's exchanges."""
    listing = await rabbitmqctl(
        "--no-table-headers", "list_bindings", "source_name", "destination_name", "arguments"
    )
    found = set()
    for line in listing.splitlines():
        source, destination, arguments = line.split("\t")
        if source.startswith(prefix):
            found.add((source, destination, arguments))
    return found


async def test_names_and_queue_types(fleet: Fleet) -> None:
    fifo = trigger("fifo", {"type": "a"}, parallelism=1)
    wide = trigger("wide")
    broker = await fleet.new(mesh(fifo, wide))
    prefix = broker.names.prefix
    declared = await queues(prefix)
    assert set(declared) == {
        f"{prefix}.default.fifo",
        f"{prefix}.default.fifo.dlq",
        f"{prefix}.default.wide",
        f"{prefix}.default.wide.dlq",
        f"{prefix}._topology",
    }
    assert '{"x-queue-type","quorum"}' in declared[f"{prefix}.default.fifo"]
    assert '{"x-single-active-consumer",true}' in declared[f"{prefix}.default.fifo"]
    assert "x-single-active-consumer" not in declared[f"{prefix}.default.wide"]
    assert '{"x-queue-type","stream"}' in declared[f"{prefix}._topology"]
    exchange = f"{prefix}.default.default"
    found = await bindings(prefix)
    assert (exchange, f"{prefix}.default.fifo", '[{"ce-type","a"},{"x-match","all"}]') in found
    assert (exchange, f"{prefix}.default.wide", '[{"x-match","all"}]') in found


async def test_a_changed_filter_replaces_the_binding(fleet: Fleet) -> None:
    before = trigger("orders", {"type": "order.created"})
    first = await fleet.new(mesh(before))
    prefix = first.names.prefix
    await first.close()
    after = trigger("orders", {"type": "order.paid"})
    second = await fleet.new(mesh(after), prefix=prefix)
    inbox = Inbox()
    await second.consume(after, inbox)
    old, new = event(1, "order.created"), event(2, "order.paid")
    await second.publish(BROKER, [old, new])
    assert (await inbox.next()).event.id == new.id
    await inbox.nothing_more(0.5)
    assert {b[2] for b in await bindings(prefix) if b[1].endswith(".orders")} == {
        '[{"ce-type","order.paid"},{"x-match","all"}]'
    }


async def test_a_trigger_moved_to_another_broker_leaves_the_old_exchange(fleet: Fleet) -> None:
    first = await fleet.new(mesh(trigger("moving", broker="a"), brokers=("a", "b", "default")))
    prefix = first.names.prefix
    await first.close()
    moved = trigger("moving", broker="b")
    second = await fleet.new(mesh(moved, brokers=("a", "b", "default")), prefix=prefix)
    inbox = Inbox()
    await second.consume(moved, inbox)
    await second.publish("default/a", [event(1)])
    await second.publish("default/b", [event(2)])
    assert (await inbox.next()).event.get("seq") == 2
    await inbox.nothing_more(0.5)


async def test_prune_lists_then_deletes_what_the_config_dropped(fleet: Fleet) -> None:
    keep, drop = trigger("keep"), trigger("drop")
    first = await fleet.new(mesh(keep, drop, brokers=("default", "old")))
    prefix = first.names.prefix
    await first.close()
    second = await fleet.new(mesh(keep), prefix=prefix)
    assert f"{prefix}.default.drop" in await queues(prefix)  # left alone until pruned
    planned = await second.plan_prune()
    assert planned == [
        f"{prefix}.default.drop",
        f"{prefix}.default.drop.dlq",
        f"{prefix}.default.old",
    ]
    with pytest.raises(BrokerError, match="not prunable"):
        await second.prune([f"{prefix}.default.keep"])
    with pytest.raises(BrokerError, match="not prunable"):
        await second.prune(["someone-elses-queue"])
    assert await second.prune(planned) == 3
    assert f"{prefix}.default.drop" not in await queues(prefix)
    assert await second.plan_prune() == []


async def test_plan_prune_works_without_opening(fleet: Fleet) -> None:
    from brokers.rabbitmq.broker import RabbitBroker

    first = await fleet.new(mesh(trigger("gone")))
    await first.close()
    idle = RabbitBroker(amqp_url(), prefix=first.names.prefix)
    prefix = first.names.prefix
    assert await idle.plan_prune(mesh()) == [f"{prefix}.default.gone", f"{prefix}.default.gone.dlq"]


async def test_parallelism_change_keeps_the_existing_queue(fleet: Fleet) -> None:
    fifo = trigger("switch", parallelism=1)
    first = await fleet.new(mesh(fifo))
    await first.close()
    wide = trigger("switch", parallelism=8)
    second = await fleet.new(mesh(wide), prefix=first.names.prefix)
    inbox = Inbox()
    await second.consume(wide, inbox)
    await second.publish(BROKER, [event(1)])
    assert (await inbox.next()).event.get("seq") == 1


async def test_queue_name_collisions_are_config_errors() -> None:
    from brokers.errors import ConfigError
    from brokers.rabbitmq.broker import RabbitBroker

    broker = RabbitBroker(amqp_url(), prefix=unique_prefix())
    with pytest.raises(ConfigError, match="also used by"):
        await broker.open(mesh(trigger("a"), trigger("a.dlq")))
    assert not broker.ready
