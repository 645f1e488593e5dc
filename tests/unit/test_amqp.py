"""The AMQP shape of events and the RabbitMQ names and topology, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from brokers.delivery import Destination
from brokers.errors import ConfigError, InvalidEvent
from brokers.event import Event
from brokers.filters import compile_attributes, compile_filters
from brokers.rabbitmq.registry import (
    deleted_record,
    exchange_record,
    fold_records,
    prune_candidates,
    queue_record,
    stale_bindings,
    sync_nonce,
    sync_record,
)
from brokers.rabbitmq.topology import (
    DEAD_LETTER_QUEUE_ARGUMENTS,
    Binding,
    Names,
    binding_arguments,
    fully_matched,
    plan_topology,
    trigger_queue_arguments,
)
from brokers.rabbitmq.wire import (
    ATTEMPT_HEADER,
    DATA_HEADER,
    PARKED_HEADER,
    TYPES_HEADER,
    dead_letter_id,
    delay_bucket,
    from_amqp,
    masked_url,
    new_message_id,
    parked_at,
    to_amqp,
    with_heartbeat,
)
from brokers.triggers import BrokerSpec, MeshConfig, TriggerSpec

BASE = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


def trigger(
    name: str,
    spec: dict[str, object] | None = None,
    parallelism: int = 100,
    broker: str = "default",
) -> TriggerSpec:
    filt = compile_filters(spec["filters"]) if spec else compile_filters([])
    return TriggerSpec(
        "ns", name, broker, Destination(uri="http://x"), filt, parallelism=parallelism
    )


def config(*triggers: TriggerSpec, brokers: tuple[str, ...] = ("default",)) -> MeshConfig:
    return MeshConfig({f"ns/{b}": BrokerSpec("ns", b) for b in brokers}, list(triggers))


# --- message shape ---------------------------------------------------------------------------


def test_attributes_are_ce_prefixed_string_headers() -> None:
    event = Event.create(
        {
            **BASE,
            "datacontenttype": "application/json",
            "count": 3,
            "flag": False,
            "subject": "héllo",
        },
        b"{}",
    )
    wire = to_amqp(event)
    assert wire.headers == {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/s",
        "ce-type": "t",
        "ce-count": "3",
        "ce-flag": "false",
        "ce-subject": "héllo",
        TYPES_HEADER: "count:i,flag:b",
    }
    assert wire.content_type == "application/json"
    assert wire.body == b"{}"
    assert len(wire.message_id) == 32
    assert wire.message_id != to_amqp(event).message_id


@pytest.mark.parametrize(
    ("attributes", "data"),
    [
        ({"big": 2**31 - 1, "small": -(2**31), "yes": True, "digits": "7"}, b"\x00\xff"),
        ({"datacontenttype": "text/plain; charset=utf-8"}, b""),
        ({}, None),
        ({"time": "2026-01-01T00:00:00Z", "dataschema": "https://x/y"}, b"[]"),
    ],
)
def test_round_trip_keeps_types_and_data(attributes: dict[str, object], data: bytes | None) -> None:
    event = Event.create({**BASE, **attributes}, data)
    wire = to_amqp(event, attempt=4)
    decoded, attempt = from_amqp(wire.headers, wire.body, wire.content_type)
    assert attempt == 4
    assert decoded.data == data
    assert {k: (type(v), v) for k, v in decoded.attributes.items()} == {
        k: (type(v), v) for k, v in event.attributes.items()
    }


def test_no_data_and_empty_data_differ() -> None:
    assert DATA_HEADER not in to_amqp(Event.create(BASE)).headers
    assert to_amqp(Event.create(BASE, b"")).headers[DATA_HEADER] == "empty"


def test_attempt_header_only_after_a_failure() -> None:
    assert ATTEMPT_HEADER not in to_amqp(Event.create(BASE)).headers
    assert to_amqp(Event.create(BASE), 2).headers[ATTEMPT_HEADER] == 2


def test_a_content_type_too_long_for_the_property_travels_as_a_header() -> None:
    long_type = "application/x-" + "a" * 300
    event = Event.create({**BASE, "datacontenttype": long_type}, b"x")
    wire = to_amqp(event)
    assert wire.content_type is None
    assert wire.headers["ce-datacontenttype"] == long_type
    assert from_amqp(wire.headers, wire.body, None)[0].datacontenttype == long_type


def test_other_publishers_messages_are_read_leniently() -> None:
    headers = {
        "ce-specversion": b"1.0",
        "ce-id": "x",
        "ce-source": "/s",
        "ce-type": "t",
        "ce-count": 5,
        "ce-ok": True,
        "x-death": [],
        "x-delivery-count": 3,
        "other": "ignored",
    }
    event, attempt = from_amqp(headers, b"body", "text/plain")
    assert attempt == 0
    assert event.attributes == {
        "specversion": "1.0",
        "id": "x",
        "source": "/s",
        "type": "t",
        "count": 5,
        "ok": True,
        "datacontenttype": "text/plain",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"ce-id": "1", "ce-source": "/s", "ce-type": "t"},
        {**{f"ce-{k}": v for k, v in BASE.items()}, TYPES_HEADER: "n:x"},
        {**{f"ce-{k}": v for k, v in BASE.items()}, "ce-n": "abc", TYPES_HEADER: "n:i"},
        {**{f"ce-{k}": v for k, v in BASE.items()}, "ce-n": "yes", TYPES_HEADER: "n:b"},
        {**{f"ce-{k}": v for k, v in BASE.items()}, ATTEMPT_HEADER: "1"},
        {**{f"ce-{k}": v for k, v in BASE.items()}, "ce-bad": b"\xff"},
        {**{f"ce-{k}": v for k, v in BASE.items()}, "ce-list": [1]},
        {**{f"ce-{k}": v for k, v in BASE.items()}, "ce-Upper": "x"},
    ],
)
def test_invalid_messages_are_rejected(headers: dict[str, object]) -> None:
    with pytest.raises(InvalidEvent):
        from_amqp(headers, b"", None)


def test_an_attribute_name_too_long_for_amqp_is_invalid() -> None:
    event = Event.create({**BASE, "x" * 260: "v"})
    with pytest.raises(InvalidEvent, match="too long"):
        to_amqp(event)


def test_dead_letter_ids_are_stable() -> None:
    assert dead_letter_id("abc", {}, b"") == "abc"
    one = dead_letter_id(None, {"ce-id": "1", "x-delivery-count": 1}, b"x")
    two = dead_letter_id(None, {"ce-id": "1", "x-delivery-count": 9}, b"x")
    assert one == two
    assert one != dead_letter_id(None, {"ce-id": "2"}, b"x")
    assert new_message_id() != new_message_id()


def test_parking_time() -> None:
    assert parked_at({PARKED_HEADER: 123}) == 123
    death = datetime(2026, 1, 1, tzinfo=UTC)
    assert parked_at({"x-death": [{"time": death}]}) == int(death.timestamp()) * 10**9
    assert parked_at(None) == 0
    assert to_amqp(Event.create(BASE), parked_at=5).headers[PARKED_HEADER] == 5


# --- delays ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "bucket"),
    [
        (0, 0),
        (-1, 0),
        (0.0001, 1),
        (0.037, 37),
        (0.099, 99),
        (0.1, 100),
        (0.1001, 110),
        (0.25, 250),
        (0.3, 300),
        (1.234, 1300),
        (9.99, 10000),
        (3600, 3_600_000),
    ],
)
def test_delays_round_up_to_two_significant_digits(delay: float, bucket: int) -> None:
    assert delay_bucket(delay) == bucket


def test_delay_buckets_are_never_early_and_at_most_ten_percent_late() -> None:
    for ms in range(1, 20000, 7):
        delay = ms / 1000 + 0.0004
        bucket = delay_bucket(delay)
        assert delay * 1000 <= bucket <= delay * 1100 + 1


# --- connection URL ------------------------------------------------------------------------


def test_heartbeat_is_added_unless_the_url_sets_one() -> None:
    assert with_heartbeat("amqp://g:p@h:5672/", 15) == "amqp://g:p@h:5672/?heartbeat=15"
    assert with_heartbeat("amqp://h/vh?heartbeat=5&name=x", 15) == "amqp://h/vh?heartbeat=5&name=x"
    assert with_heartbeat("amqps://h/%2F?ssl=1", 15) == "amqps://h/%2F?ssl=1&heartbeat=15"


def test_passwords_are_masked() -> None:
    assert masked_url("amqp://guest:s3cret@h:5672/") == "amqp://guest:******@h:5672/"
    assert masked_url("amqp://h/") == "amqp://h/"


# --- names and topology ----------------------------------------------------------------------


def test_names() -> None:
    names = Names("p")
    assert names.exchange("ns/default") == "p.ns.default"
    assert names.queue("ns/t") == "p.ns.t"
    assert names.dead_letter_queue("ns/t") == "p.ns.t.dlq"
    assert names.delay_exchange == "p._delay"
    assert names.delay_queue(250) == "p._delay.250ms"
    assert names.registry == "p._topology"


def test_bindings_follow_exact_filters() -> None:
    exact = compile_filters([{"exact": {"type": "a"}}, {"exact": {"source": "/s"}}])
    assert binding_arguments(exact) == {"x-match": "all", "ce-source": "/s", "ce-type": "a"}
    assert fully_matched(exact)
    assert binding_arguments(compile_filters([])) == {"x-match": "all"}
    content = compile_filters([{"exact": {"datacontenttype": "text/plain"}}])
    assert binding_arguments(content) == {"x-match": "all"}
    assert not fully_matched(content)
    present = compile_attributes({"type": "a", "subject": ""})
    assert binding_arguments(present) == {"x-match": "all", "ce-type": "a"}
    assert not fully_matched(present)
    prefixed = compile_filters([{"prefix": {"type": "a."}}])
    assert not fully_matched(prefixed)


def test_queue_arguments() -> None:
    wide = trigger_queue_arguments("q.dlq", 10)
    assert wide["x-queue-type"] == "quorum"
    assert wide["x-dead-letter-routing-key"] == "q.dlq"
    assert wide["x-dead-letter-strategy"] == "at-least-once"
    assert "x-single-active-consumer" not in wide
    assert trigger_queue_arguments("q.dlq", 1)["x-single-active-consumer"] is True
    # listing gives messages back: RabbitMQ 4's default delivery limit (20) must not drop them
    assert DEAD_LETTER_QUEUE_ARGUMENTS["x-delivery-limit"] == 2**31 - 1


def test_plan_topology() -> None:
    t = trigger("orders", {"filters": [{"exact": {"type": "o"}}]}, parallelism=1, broker="b")
    topology = plan_topology(config(t, brokers=("default", "b")), Names("p"))
    assert topology.exchanges == {"ns/default": "p.ns.default", "ns/b": "p.ns.b"}
    plan = topology.queues["ns/orders"]
    assert plan.name == "p.ns.orders"
    assert plan.dead_letter_queue == "p.ns.orders.dlq"
    assert plan.binding == Binding("p.ns.b", {"x-match": "all", "ce-type": "o"})
    assert plan.matched
    assert plan.parallelism == 1


def test_colliding_queue_names_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"p\.ns\.a\.dlq .*ns/a"):
        plan_topology(config(trigger("a"), trigger("a.dlq")), Names("p"))


# --- registry --------------------------------------------------------------------------------


def test_registry_fold_latest_wins_and_garbage_is_skipped() -> None:
    names = Names("p")
    old = plan_topology(config(trigger("t", {"filters": [{"exact": {"type": "a"}}]})), names)
    new = plan_topology(config(trigger("t", {"filters": [{"exact": {"type": "b"}}]})), names)
    state = fold_records(
        [
            queue_record(old.queues["ns/t"]),
            b"not json",
            b'{"kind": "queue"}',
            sync_record("n1"),
            exchange_record("p.ns.default", "ns/default"),
            exchange_record("p.ns.gone", "ns/gone"),
        ]
    )
    assert set(state.queues) == {"p.ns.t"}
    assert stale_bindings(state, new.queues["ns/t"]) == [old.queues["ns/t"].binding]
    assert stale_bindings(state, old.queues["ns/t"]) == []
    assert prune_candidates(state, new) == ["p.ns.gone"]
    assert prune_candidates(state, plan_topology(config(), names)) == [
        "p.ns.t",
        "p.ns.t.dlq",
        "p.ns.gone",
    ]
    state = fold_records([queue_record(old.queues["ns/t"]), deleted_record("p.ns.t")])
    assert state.queues == {}


def test_sync_records() -> None:
    assert sync_nonce(sync_record("abc")) == "abc"
    assert sync_nonce(exchange_record("x", "ns/x")) is None
    assert sync_nonce(b'{"kind":"sync"') is None
