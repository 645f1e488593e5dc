"""`cemesh render`: the loaded mesh configuration as Kubernetes manifests, for two deployments.

- `knative`: Knative Eventing runs the mesh. Each configured broker becomes a Knative Broker of
  class `RabbitMQBroker` (knative-extensions/eventing-rabbitmq) whose `spec.config` names a
  `RabbitmqBrokerConfig`, which names the `RabbitmqCluster` rendered next to it. Triggers come
  from `config/` and from each func.yaml's `deploy.subscriptions`, subscribers being the
  functions' Knative Services. eventing-rabbitmq filters only on exact attribute values (a
  headers-exchange binding); a trigger that needs more (`prefix`, `suffix`, `any`, `not`,
  `cesql`, cemesh's `data`) would receive events it should not, so it is refused, one line per
  trigger, unless the caller allows degrading it to its exact part.
- `standalone`: cemesh itself runs the mesh in the cluster, every filter included. The gateway
  and dispatcher are one Knative Service (the image `func build` makes from the repository
  root), reading its mesh config from a ConfigMap, with a `RabbitmqCluster`, Redis and RBAC.

Everything is built from the loaded configuration (`gateway.mesh.load_mesh`), so what renders is
what `cemesh up` validated and runs; nothing is re-parsed. Trigger specs are copied from
`TriggerSpec.raw_spec`, the user's own YAML, and only completed (a subscriber `ref` gets the
`apiVersion` Knative requires) or resolved (standalone: a function becomes its cluster URL).
Triggers made from func.yaml subscriptions are named and shaped as `func deploy` makes them
(`<function>-function-trigger-<i>`), so `kubectl apply` and `func deploy` converge on the same
objects instead of creating duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from brokers.delivery import DeliverySpec, Destination
from brokers.triggers import BrokerSpec, MeshConfig, TriggerSpec
from gateway.hosting.python import FunctionProject
from gateway.mesh import LoadedConfig

Target = Literal["knative", "standalone"]
Obj = dict[str, Any]

BROKER_CLASS_ANNOTATION: Final = "eventing.knative.dev/broker.class"
RABBITMQ_BROKER_CLASS: Final = "RabbitMQBroker"
DEGRADED_ANNOTATION: Final = "cemesh.dev/degraded"
FILTERS_ANNOTATION: Final = "cemesh.dev/filters"
KSVC_API: Final = "serving.knative.dev/v1"
EVENTING_API: Final = "eventing.knative.dev/v1"
RABBITMQ_CONFIG_API: Final = "eventing.knative.dev/v1alpha1"
RABBITMQ_API: Final = "rabbitmq.com/v1beta1"
LABELS: Final = {"app.kubernetes.io/part-of": "cemesh", "app.kubernetes.io/managed-by": "cemesh"}
CONFIG_MOUNT: Final = "/etc/cemesh/config"
MESH_CONFIG_KEY: Final = "mesh.yaml"
DEFAULT_IMAGE: Final = "cemesh:latest"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """What the configuration cannot say: where and with what the cluster side runs."""

    namespace: str = "default"
    name: str = "cemesh"
    image: str = DEFAULT_IMAGE
    rabbitmq_replicas: int = 1
    redis_image: str = "redis:7.4-alpine"
    min_scale: int = 1
    max_scale: int = 10

    @property
    def rabbitmq(self) -> str:
        return f"{self.name}-rabbitmq"

    @property
    def redis(self) -> str:
        return f"{self.name}-redis"

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"


@dataclass(frozen=True, slots=True)
class Degradation:
    """A trigger eventing-rabbitmq cannot filter as cemesh does, and why."""

    trigger: TriggerSpec
    reason: str

    def line(self) -> str:
        return f"{self.trigger.origin}: Trigger {self.trigger.key}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Rendered:
    """Files (name -> objects) plus the triggers that render only in a degraded form."""

    target: Target
    files: Mapping[str, Sequence[Obj]]
    degraded: Sequence[Degradation] = field(default_factory=tuple)

    def objects(self) -> list[Obj]:
        return [obj for objs in self.files.values() for obj in objs]


def render(target: Target, loaded: LoadedConfig, options: RenderOptions | None = None) -> Rendered:
    options = options or RenderOptions()
    if target == "knative":
        return render_knative(loaded, options)
    return render_standalone(loaded, options)


def write(rendered: Rendered, directory: Path) -> list[Path]:
    """Write one multi-document file per group and a kustomization.yaml listing them."""
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, objects in rendered.files.items():
        path = directory / name
        path.write_text(dump_all(objects), "utf-8")
        paths.append(path)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(rendered.files),
    }
    path = directory / "kustomization.yaml"
    path.write_text(
        f"# Written by `cemesh render --target {rendered.target}`.\n" + dump(kustomization)
    )
    paths.append(path)
    return paths


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's mesh.yaml) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(obj: Obj) -> str:
    text: str = yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
    return text


def dump_all(objects: Sequence[Obj]) -> str:
    return "".join(f"---\n{dump(obj)}" for obj in objects)


# --- knative ---------------------------------------------------------------------------------


def render_knative(loaded: LoadedConfig, options: RenderOptions) -> Rendered:
    config = loaded.config
    functions = _function_trigger_names(loaded.functions)
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
    files = {"rabbitmq.yaml": [_rabbitmq_cluster(options)], "brokers.yaml": brokers}
    if triggers:
        files["triggers.yaml"] = triggers
    return Rendered("knative", files, tuple(degraded))


def _rabbitmq_cluster(options: RenderOptions) -> Obj:
    return {
        "apiVersion": RABBITMQ_API,
        "kind": "RabbitmqCluster",
        "metadata": _meta(options.rabbitmq, options.namespace),
        "spec": {"replicas": options.rabbitmq_replicas},
    }


def _rabbitmq_broker_config(broker: BrokerSpec, options: RenderOptions) -> Obj:
    reference: Obj = {"name": options.rabbitmq}
    if broker.namespace != options.namespace:
        reference["namespace"] = options.namespace
    return {
        "apiVersion": RABBITMQ_CONFIG_API,
        "kind": "RabbitmqBrokerConfig",
        "metadata": _meta(f"{broker.name}-rabbitmq", broker.namespace),
        # Quorum queues: replicated and durable, what the mesh's own RabbitMQ broker declares.
        "spec": {"rabbitmqClusterReference": reference, "queueType": "quorum"},
    }


def _knative_broker(broker: BrokerSpec) -> Obj:
    annotations = {**broker.annotations, BROKER_CLASS_ANNOTATION: RABBITMQ_BROKER_CLASS}
    return {
        "apiVersion": EVENTING_API,
        "kind": "Broker",
        "metadata": _meta(broker.name, broker.namespace, annotations),
        "spec": {
            "config": {
                "apiVersion": RABBITMQ_CONFIG_API,
                "kind": "RabbitmqBrokerConfig",
                "name": f"{broker.name}-rabbitmq",
            },
            "delivery": _delivery(broker.delivery, _knative_destination),
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
        spec["filter"] = _plain(raw["filter"])
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
        "metadata": _meta(name, trigger.namespace, annotations),
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
    dest: Obj = _plain(raw)
    ref = dest.get("ref")
    if isinstance(ref, dict) and ref.get("kind") == "Service":
        ref.setdefault("apiVersion", KSVC_API)
    return dest


def _knative_delivery(raw: Any) -> Obj:
    delivery: Obj = _plain(raw)
    if isinstance(delivery.get("deadLetterSink"), dict):
        delivery["deadLetterSink"] = _knative_subscriber(delivery["deadLetterSink"])
    return delivery


def _knative_destination(destination: Destination) -> Obj:
    if destination.function is not None:
        return {"ref": {"apiVersion": KSVC_API, "kind": "Service", "name": destination.function}}
    return {"uri": str(destination.uri)}


def _function_trigger_names(projects: Sequence[FunctionProject]) -> dict[str, str]:
    """Trigger key as loaded -> the name `func deploy` gives the same subscription."""
    names: dict[str, str] = {}
    for project in projects:
        subs = project.subscriptions()
        for index in range(len(subs.subscriptions)):
            loaded_key = f"{subs.namespace}/{subs.name}-sub-{index}"
            names[loaded_key] = f"{subs.name}-function-trigger-{index}"
    return names


# --- standalone ------------------------------------------------------------------------------


def render_standalone(loaded: LoadedConfig, options: RenderOptions) -> Rendered:
    mesh = mesh_config_documents(loaded, options)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(options.config_map, options.namespace),
        "data": {MESH_CONFIG_KEY: dump_all(mesh)},
    }
    files = {
        "rbac.yaml": _rbac(options),
        "rabbitmq.yaml": [_rabbitmq_cluster(options)],
        "redis.yaml": _redis(options),
        "cemesh.yaml": [config_map, _gateway_service(options)],
    }
    return Rendered("standalone", files)


def mesh_config_documents(loaded: LoadedConfig, options: RenderOptions) -> list[Obj]:
    """Brokers and Triggers for the in-cluster gateway, every function resolved to its URL.

    The gateway in the cluster hosts no functions (each is its own Knative Service), so a
    `ref` to a function is written as the Service's cluster-local address instead.
    """
    config: MeshConfig = loaded.config
    functions = _function_trigger_names(loaded.functions)
    docs: list[Obj] = []
    for broker in config.brokers.values():
        spec: Obj = {"delivery": _delivery(broker.delivery, _cluster_destination(broker.namespace))}
        docs.append(
            {
                "apiVersion": EVENTING_API,
                "kind": "Broker",
                "metadata": _meta(broker.name, broker.namespace, dict(broker.annotations), {}),
                "spec": spec,
            }
        )
    for trigger in config.triggers:
        raw = _plain(dict(trigger.raw_spec))
        resolve = _cluster_destination(trigger.namespace)
        raw["subscriber"] = resolve(trigger.subscriber)
        delivery = raw.get("delivery")
        if isinstance(delivery, dict) and "deadLetterSink" in delivery:
            sink = trigger.delivery.dead_letter_sink
            delivery["deadLetterSink"] = resolve(sink) if sink else delivery["deadLetterSink"]
        docs.append(
            {
                "apiVersion": EVENTING_API,
                "kind": "Trigger",
                "metadata": _meta(
                    functions.get(trigger.key, trigger.name),
                    trigger.namespace,
                    dict(trigger.annotations),
                    {},
                ),
                "spec": raw,
            }
        )
    return docs


def _cluster_destination(namespace: str) -> Any:
    def resolve(destination: Destination) -> Obj:
        if destination.function is not None:
            return {"uri": f"http://{destination.function}.{namespace}.svc.cluster.local"}
        return {"uri": str(destination.uri)}

    return resolve


def _gateway_service(options: RenderOptions) -> Obj:
    """The same Service `func deploy` makes from the root func.yaml (tests compare the two)."""
    secret = f"{options.rabbitmq}-default-user"
    env: list[Obj] = [
        {
            "name": "RABBITMQ_USERNAME",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}},
        },
        {
            "name": "RABBITMQ_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}},
        },
        {
            "name": "CEMESH_BROKER_URL",
            "value": f"amqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@{options.rabbitmq}:5672/",
        },
        {"name": "CEMESH_STATE_URL", "value": f"redis://{options.redis}:6379/0"},
        {"name": "CEMESH_CONFIG", "value": CONFIG_MOUNT},
        {"name": "CEMESH_FUNCTIONS", "value": "/etc/cemesh/no-functions"},
        {"name": "CEMESH_LOG_FORMAT", "value": "json"},
    ]
    container: Obj = {
        "name": "cemesh",
        "image": options.image,
        "ports": [{"containerPort": 8080}],
        "env": env,
        "volumeMounts": [{"name": "mesh-config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
        "readinessProbe": {"httpGet": {"path": "/health/readiness"}},
        "livenessProbe": {"httpGet": {"path": "/health/liveness"}},
    }
    return {
        "apiVersion": KSVC_API,
        "kind": "Service",
        "metadata": _meta(options.name, options.namespace),
        "spec": {
            "template": {
                "metadata": {
                    "labels": dict(LABELS),
                    "annotations": {
                        # The dispatcher's RabbitMQ consumers must run between HTTP requests.
                        "autoscaling.knative.dev/min-scale": str(options.min_scale),
                        "autoscaling.knative.dev/max-scale": str(options.max_scale),
                    },
                },
                "spec": {
                    "serviceAccountName": options.name,
                    "containers": [container],
                    "volumes": [{"name": "mesh-config", "configMap": {"name": options.config_map}}],
                },
            }
        },
    }


def _redis(options: RenderOptions) -> list[Obj]:
    labels = {"app.kubernetes.io/name": options.redis, **LABELS}
    selector = {"app.kubernetes.io/name": options.redis}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(options.redis, options.namespace, labels=labels),
        "spec": {
            "replicas": 1,
            # One writer: a second pod would be a second, diverging state store.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "redis",
                            "image": options.redis_image,
                            "args": ["--appendonly", "yes", "--dir", "/data"],
                            "ports": [{"name": "redis", "containerPort": 6379}],
                            "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(options.redis, options.namespace, labels=labels),
        "spec": {
            "selector": selector,
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
        },
    }
    return [deployment, service]


def _rbac(options: RenderOptions) -> list[Obj]:
    name, namespace = options.name, options.namespace
    rules = [
        # Reading its own mesh config, and the RabbitMQ credentials the operator writes.
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [f"{options.rabbitmq}-default-user"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        # Tekton-triggering functions start PipelineRuns and follow them (issue 7).
        {
            "apiGroups": ["tekton.dev"],
            "resources": ["pipelineruns"],
            "verbs": ["create", "get", "list", "watch"],
        },
    ]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(name, namespace),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(name, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]


# --- shared ----------------------------------------------------------------------------------


def _meta(
    name: str,
    namespace: str,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace}
    labels = LABELS if labels is None else labels
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _delivery(spec: DeliverySpec, destination: Any) -> Obj:
    """A DeliverySpec as Knative YAML: the effective values, so the cluster retries as locally."""
    out: Obj = {
        "retry": spec.retry,
        "backoffPolicy": spec.backoff_policy,
        "backoffDelay": iso_duration(spec.backoff_delay),
        # `timeout` is Knative's delivery-timeout feature (Beta, enabled by default).
        "timeout": iso_duration(spec.timeout),
    }
    if spec.dead_letter_sink is not None:
        out["deadLetterSink"] = destination(spec.dead_letter_sink)
    return out


def iso_duration(seconds: float) -> str:
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"PT{text or '0'}S"


def _plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists (TriggerSpec holds read-only mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
