"""`cemesh render --target knative`: Knative Eventing runs the mesh.

Each configured broker becomes a Knative Broker of class `RabbitMQBroker`
(knative-extensions/eventing-rabbitmq) whose `spec.config` names a `RabbitmqBrokerConfig`,
which names the `RabbitmqCluster` rendered next to it. Triggers come from `config/` and from
each func.yaml's `deploy.subscriptions`, subscribers being the functions' Knative Services.
eventing-rabbitmq filters only on exact attribute values (a headers-exchange binding); a trigger
that needs more (`prefix`, `suffix`, `any`, `not`, `cesql`, cemesh's `data`) would receive
events it should not, so it is refused, one line per trigger, unless the caller allows
degrading it to its exact part.

The split from render.py is at the target: everything here is what only the knative target
needs (the broker class, the degradation of filters eventing-rabbitmq cannot evaluate, `ref`
completion for Knative Services); what the standalone target shares with it is in
manifests.py, and render.py picks between the two.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from brokers.delivery import Destination
from brokers.triggers import BrokerSpec, TriggerSpec
from gateway.deploy.manifests import (
    EVENTING_API,
    KSVC_API,
    Degradation,
    Obj,
    Rendered,
    RenderOptions,
    delivery_yaml,
    function_trigger_names,
    metadata,
    plain,
    rabbitmq_cluster,
)
from gateway.mesh import LoadedConfig

BROKER_CLASS_ANNOTATION: Final = "eventing.knative.dev/broker.class"
RABBITMQ_BROKER_CLASS: Final = "RabbitMQBroker"
DEGRADED_ANNOTATION: Final = "cemesh.dev/degraded"
FILTERS_ANNOTATION: Final = "cemesh.dev/filters"
RABBITMQ_CONFIG_API: Final = "eventing.knative.dev/v1alpha1"


def render_knative(loaded: LoadedConfig, options: RenderOptions) -> Rendered:
    config = loaded.config
    functions = function_trigger_names(loaded.functions)
    brokers: list[Obj] = []
    for broker in config.brokers.values():
        brokers.append(_rabbitmq_broker_config(broker, options))
        brokers.append(_knative_broker(broker))
    triggers: list[Obj] = []
    degraded: list[Degradation] = []
    for trigger in config.triggers:
        obj, reason = _knative_trigger(trigger, functions.get(trigger.key))
        triggers.append(obj)
        if reason is not None:
            degraded.append(Degradation(trigger, reason))
    files = {"rabbitmq.yaml": [rabbitmq_cluster(options)], "brokers.yaml": brokers}
    if triggers:
        files["triggers.yaml"] = triggers
    return Rendered("knative", files, tuple(degraded))


def _rabbitmq_broker_config(broker: BrokerSpec, options: RenderOptions) -> Obj:
    reference: Obj = {"name": options.rabbitmq}
    if broker.namespace != options.namespace:
        reference["namespace"] = options.namespace
    return {
        "apiVersion": RABBITMQ_CONFIG_API,
        "kind": "RabbitmqBrokerConfig",
        "metadata": metadata(f"{broker.name}-rabbitmq", broker.namespace),
        # Quorum queues: replicated and durable, what the mesh's own RabbitMQ broker declares.
        "spec": {"rabbitmqClusterReference": reference, "queueType": "quorum"},
    }


def _knative_broker(broker: BrokerSpec) -> Obj:
    annotations = {**broker.annotations, BROKER_CLASS_ANNOTATION: RABBITMQ_BROKER_CLASS}
    return {
        "apiVersion": EVENTING_API,
        "kind": "Broker",
        "metadata": metadata(broker.name, broker.namespace, annotations),
        "spec": {
            "config": {
                "apiVersion": RABBITMQ_CONFIG_API,
                "kind": "RabbitmqBrokerConfig",
                "name": f"{broker.name}-rabbitmq",
            },
            "delivery": delivery_yaml(broker.delivery, _knative_destination),
        },
    }


def _knative_trigger(trigger: TriggerSpec, func_name: str | None) -> tuple[Obj, str | None]:
    raw = dict(trigger.raw_spec)
    annotations = dict(trigger.annotations)
    spec: Obj = {"broker": trigger.broker}
    reason: str | None = None
    filters = raw.get("filters")
    if filters:
        exact = exact_only(filters)
        if exact is not None:
            spec["filter"] = {"attributes": exact}
        else:
            reason = _degradation_reason(filters, trigger)
            if trigger.filter.exact:
                spec["filter"] = {"attributes": dict(trigger.filter.exact)}
            annotations[DEGRADED_ANNOTATION] = reason
            annotations[FILTERS_ANNOTATION] = json.dumps(filters, separators=(",", ":"))
    elif raw.get("filter"):
        spec["filter"] = plain(raw["filter"])
    spec["subscriber"] = (
        _knative_subscriber(raw["subscriber"])
        if "subscriber" in raw
        else _knative_destination(trigger.subscriber)
    )
    if raw.get("delivery"):
        spec["delivery"] = _knative_delivery(raw["delivery"])
    name = func_name or trigger.name
    obj = {
        "apiVersion": EVENTING_API,
        "kind": "Trigger",
        "metadata": metadata(name, trigger.namespace, annotations),
        "spec": spec,
    }
    return obj, reason


def exact_only(filters: Any) -> dict[str, str] | None:
    """The `filters` list as one exact-attribute map, or None when it needs another dialect.

    `exact` entries and `all` lists of them AND together, like `filter.attributes` does.
    """
    out: dict[str, str] = {}
    if not isinstance(filters, list):
        return None
    for entry in filters:
        if not isinstance(entry, Mapping) or len(entry) != 1:
            return None
        ((dialect, body),) = entry.items()
        if dialect == "exact" and isinstance(body, Mapping):
            parts: Mapping[str, Any] | None = body
        elif dialect == "all":
            parts = exact_only(body)
        else:
            return None
        if parts is None:
            return None
        for name, value in parts.items():
            if not isinstance(value, str) or not value or out.setdefault(name, value) != value:
                return None
    return out


def _dialects(filters: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(filters, Mapping):
        filters = [filters]
    if not isinstance(filters, list):
        return found
    for entry in filters:
        if isinstance(entry, Mapping):
            for dialect, body in entry.items():
                found.add(str(dialect))
                if dialect in ("all", "any", "not"):
                    found |= _dialects(body)
    return found


def _degradation_reason(filters: Any, trigger: TriggerSpec) -> str:
    unsupported = sorted(_dialects(filters) - {"exact", "all"}) or ["contradictory exact"]
    exact = dict(trigger.filter.exact)
    scope = (
        "every event with " + ", ".join(f"{k}={v}" for k, v in exact.items())
        if exact
        else "every event of the broker"
    )
    return (
        f"filters use {', '.join(unsupported)}, which eventing-rabbitmq cannot evaluate "
        f"(exact attribute matches only); as a RabbitMQBroker trigger it would receive {scope}"
    )


def _knative_subscriber(raw: Any) -> Obj:
    dest: Obj = plain(raw)
    ref = dest.get("ref")
    if isinstance(ref, dict) and ref.get("kind") == "Service":
        ref.setdefault("apiVersion", KSVC_API)
    return dest


def _knative_delivery(raw: Any) -> Obj:
    delivery: Obj = plain(raw)
    if isinstance(delivery.get("deadLetterSink"), dict):
        delivery["deadLetterSink"] = _knative_subscriber(delivery["deadLetterSink"])
    return delivery


def _knative_destination(destination: Destination) -> Obj:
    if destination.function is not None:
        return {"ref": {"apiVersion": KSVC_API, "kind": "Service", "name": destination.function}}
    return {"uri": str(destination.uri)}
