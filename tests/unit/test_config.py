"""Loading Brokers, Triggers and func.yaml subscriptions from Knative YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokers.delivery import parse_duration
from brokers.errors import ConfigError
from brokers.event import Event
from brokers.triggers import FunctionSubscriptions, load_config
from gateway.hosting.funcyaml import load_func_yaml
from tests.builders import trigger_yaml
from tests.conftest import REPO


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "m.yaml").write_text(text)
    return tmp_path / "c"


BROKER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: orders, namespace: shop}
spec:
  delivery: {retry: 4, backoffPolicy: linear, backoffDelay: PT0.5S, timeout: PT2S}
---
"""


def test_trigger_inherits_broker_delivery_and_overrides(tmp_path: Path) -> None:
    config = load_config(
        _write(
            tmp_path,
            BROKER
            + """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t1, namespace: shop, annotations: {rabbitmq.eventing.knative.dev/parallelism: "1"}}
spec:
  broker: orders
  subscriber: {uri: "http://sink/x"}
  delivery: {retry: 1, deadLetterSink: {uri: "http://dls/"}}
""",
        )
    )
    (trigger,) = config.triggers
    assert trigger.delivery.retry == 1
    assert trigger.delivery.backoff_policy == "linear"
    assert trigger.delivery.backoff_delay == 0.5
    assert trigger.delivery.timeout == 2.0
    assert trigger.delivery.dead_letter_sink is not None
    assert trigger.parallelism == 1
    assert set(config.brokers) == {"shop/orders", "default/default"}


def test_filters_win_over_filter(tmp_path: Path) -> None:
    both = trigger_yaml(
        "t",
        "http://sink/",
        namespace=None,
        attributes={"type": "legacy"},
        filters=[{"exact": {"type": "modern"}}],
    )
    config = load_config(_write(tmp_path, both))
    (trigger,) = config.triggers
    assert dict(trigger.filter.exact) == {"type": "modern"}


def test_empty_attribute_value_means_present(tmp_path: Path) -> None:
    present = trigger_yaml("t", "http://sink/", namespace=None, attributes={"subject": ""})
    config = load_config(_write(tmp_path, present))
    f = config.triggers[0].filter
    base = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    assert f.matches(Event.create({**base, "subject": "x"}))
    assert not f.matches(Event.create(base))


def test_function_subscriptions_become_triggers(tmp_path: Path) -> None:
    subs = FunctionSubscriptions("greeter", "default", [("default", {"type": "a"})], "func.yaml")
    config = load_config(_write(tmp_path, ""), [subs])
    (trigger,) = config.triggers
    assert trigger.subscriber.function == "greeter"
    assert dict(trigger.filter.exact) == {"type": "a"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\n"
            "spec: {broker: default, subscriber: {uri: 'http://x'}, bogus: 1}\n",
            "unknown spec field(s): bogus",
        ),
        (
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\n"
            "spec: {broker: default, subscriber: {uri: 'http://x'}, delivery: {timeout: 5s}}\n",
            "ISO-8601",
        ),
        (
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\n"
            "spec: {broker: default, subscriber: {uri: 'http://x'},\n"
            "  filters: [{exact: {type: a}, prefix: {type: b}}]}\n",
            "exactly one dialect",
        ),
        (
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\n"
            "spec: {broker: default, subscriber: {uri: 'relative'}}\n",
            "absolute URL",
        ),
        (
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t, annotations: "
            "{rabbitmq.eventing.knative.dev/parallelism: '0'}}\n"
            "spec: {broker: default, subscriber: {uri: 'http://x'}}\n",
            "positive integer",
        ),
    ],
)
def test_invalid_triggers_name_file_and_trigger(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert "m.yaml: Trigger t:" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"), [("PT0.5S", 0.5), ("PT1M", 60), ("P1DT1H", 90000), ("PT1M30.5S", 90.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "5s", "PT-1S", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_duration(text)


def test_func_yaml_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "func.yaml"
    path.write_text("specVersion: 0.36.0\ncreated: 2026-01-01T00:00:00Z\nname: x\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_func_yaml(path)


def test_repo_config_loads() -> None:
    from gateway.mesh import load_mesh
    from gateway.settings import Settings

    loaded = load_mesh(Settings(config=REPO / "config", functions=REPO / "functions"))
    assert "default/default" in loaded.config.brokers
    assert any(p.name == "greeter" for p in loaded.functions)
