"""Brokers and Triggers, loaded from Knative's own YAML (`eventing.knative.dev/v1`).

The same files apply to a cluster, so loading is strict where Knative's webhook is strict
(unknown fields under a Trigger's spec, invalid filters) and every error names the file and the
object. Objects of other API groups (Tekton, RBAC, RabbitMQ operators...) are only used in a
cluster: they are listed as such and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from brokers.delivery import DeliverySpec, Destination, parse_delivery
from brokers.errors import ConfigError
from brokers.filters import Filter, FilterError, compile_attributes, compile_trigger_filter

EVENTING: Final = "eventing.knative.dev/v1"
PARALLELISM_ANNOTATION: Final = "rabbitmq.eventing.knative.dev/parallelism"
DEFAULT_PARALLELISM: Final = 100
CLUSTER_ONLY_EVENTING: Final = frozenset({"RabbitmqBrokerConfig"})
TRIGGER_SPEC_FIELDS: Final = frozenset({"broker", "filter", "filters", "subscriber", "delivery"})


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    namespace: str
    name: str
    delivery: DeliverySpec = field(default_factory=DeliverySpec)
    annotations: Mapping[str, str] = field(default_factory=dict)
    origin: str = "(implicit)"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class TriggerSpec:
    namespace: str
    name: str
    broker: str
    subscriber: Destination
    filter: Filter
    delivery: DeliverySpec = field(default_factory=DeliverySpec)
    parallelism: int = DEFAULT_PARALLELISM
    annotations: Mapping[str, str] = field(default_factory=dict)
    raw_spec: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def broker_key(self) -> str:
        return f"{self.namespace}/{self.broker}"


@dataclass(frozen=True, slots=True)
class FunctionSubscriptions:
    """What a function's func.yaml says about triggers (`deploy.subscriptions`)."""

    name: str
    namespace: str
    subscriptions: Sequence[tuple[str, Mapping[str, str]]]
    origin: str


@dataclass(frozen=True, slots=True)
class SkippedObject:
    origin: str
    kind: str
    name: str
    api_version: str


@dataclass(frozen=True, slots=True)
class MeshConfig:
    brokers: Mapping[str, BrokerSpec]
    triggers: Sequence[TriggerSpec]
    skipped: Sequence[SkippedObject] = ()

    def triggers_of(self, broker_key: str) -> list[TriggerSpec]:
        return [t for t in self.triggers if t.broker_key == broker_key]


def read_documents(directory: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    """Every YAML document under `directory` (recursively) with its file name."""
    if not directory.exists():
        return
    for path in sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")]):
        if any(part.startswith(".") for part in path.relative_to(directory).parts):
            continue
        origin = str(path)
        try:
            documents = list(yaml.safe_load_all(path.read_text("utf-8")))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(origin, None, f"invalid YAML{where}") from exc
        for doc in documents:
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ConfigError(origin, None, "a manifest must be a mapping")
            yield origin, doc


RESERVED_NAMESPACES: Final = frozenset(
    {
        "admin",
        "docs",
        "events",
        "functions",
        "healthz",
        "metrics",
        "openapi.json",
        "readyz",
        "redoc",
        "static",
        "ui",
        "webhooks",
    }
)
"""First path segments of the gateway's own routes: a broker there would share their paths."""


def check_namespace(origin: str, label: str | None, namespace: str) -> None:
    """A namespace that is one of the gateway's own path segments is refused (ConfigError)."""
    if namespace in RESERVED_NAMESPACES:
        raise ConfigError(
            origin,
            label,
            f"namespace '{namespace}' is reserved for the gateway's own paths "
            f"(/{namespace}/...); choose another",
        )


def load_config(
    directory: Path,
    functions: Sequence[FunctionSubscriptions] = (),
    default_namespace: str = "default",
) -> MeshConfig:
    function_names = {f.name for f in functions}
    brokers: dict[str, BrokerSpec] = {}
    raw_triggers: list[tuple[str, dict[str, Any]]] = []
    skipped: list[SkippedObject] = []
    for origin, doc in read_documents(directory):
        api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
        meta = doc.get("metadata") or {}
        name = str(meta.get("name", ""))
        label = f"{kind} {name or '(unnamed)'}"
        if not api or not kind:
            continue  # plain data files are not Kubernetes objects
        group = api.split("/", 1)[0]
        if group == "eventing.knative.dev" and kind not in CLUSTER_ONLY_EVENTING:
            if api != EVENTING or kind not in ("Broker", "Trigger"):
                raise ConfigError(origin, label, f"{api} {kind} cannot be used by cemesh")
            if not name:
                raise ConfigError(origin, label, "metadata.name is required")
            namespace = str(meta.get("namespace") or default_namespace)
            check_namespace(origin, label, namespace)
            if kind == "Broker":
                spec = _broker(
                    origin, label, namespace, name, meta, doc.get("spec") or {}, function_names
                )
                if spec.key in brokers:
                    raise ConfigError(origin, label, f"broker {spec.key} is defined twice")
                brokers[spec.key] = spec
            else:
                raw_triggers.append((origin, doc))
        else:
            skipped.append(SkippedObject(origin, kind, name, api))
    check_namespace("--namespace (CEMESH_NAMESPACE)", None, default_namespace)
    if not any(key.endswith("/default") for key in brokers):
        implicit = f"{default_namespace}/default"
        brokers.setdefault(implicit, BrokerSpec(default_namespace, "default"))
    triggers = [
        _trigger(origin, doc, brokers, function_names, default_namespace)
        for origin, doc in raw_triggers
    ]
    triggers.extend(_function_triggers(functions, brokers))
    seen: set[str] = set()
    for trigger in triggers:
        if trigger.key in seen:
            raise ConfigError(trigger.origin, f"Trigger {trigger.name}", "defined twice")
        seen.add(trigger.key)
    return MeshConfig(brokers, triggers, skipped)


def _broker(
    origin: str,
    label: str,
    namespace: str,
    name: str,
    meta: Mapping[str, Any],
    spec: Any,
    function_names: set[str],
) -> BrokerSpec:
    if not isinstance(spec, Mapping):
        raise ConfigError(origin, label, "spec must be a mapping")
    unknown = set(spec) - {"config", "delivery"}
    if unknown:
        raise ConfigError(origin, label, f"unknown spec field(s): {', '.join(sorted(unknown))}")
    try:
        delivery = parse_delivery(spec.get("delivery"), _resolver(function_names, namespace))
    except ValueError as exc:
        raise ConfigError(origin, label, str(exc)) from None
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    return BrokerSpec(namespace, name, delivery, annotations, origin)


def _resolver(function_names: set[str], namespace: str) -> Any:
    def resolve(raw: Any, where: str) -> Destination:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be a mapping with 'ref' or 'uri'")
        uri, ref = raw.get("uri"), raw.get("ref")
        if ref is None:
            if not isinstance(uri, str) or "://" not in uri:
                raise ValueError(f"{where}.uri must be an absolute URL")
            return Destination(uri=uri)
        if not isinstance(ref, Mapping) or not ref.get("name"):
            raise ValueError(f"{where}.ref needs kind and name")
        kind, name = ref.get("kind"), str(ref["name"])
        if kind != "Service":
            raise ValueError(f"{where}.ref kind '{kind}' cannot be resolved locally (use Service)")
        if name not in function_names:
            raise ValueError(f"{where}.ref names function '{name}', which is not in functions/")
        return Destination(function=name)

    return resolve


def _trigger(
    origin: str,
    doc: Mapping[str, Any],
    brokers: Mapping[str, BrokerSpec],
    function_names: set[str],
    default_namespace: str,
) -> TriggerSpec:
    meta = doc.get("metadata") or {}
    name = str(meta["name"])
    namespace = str(meta.get("namespace") or default_namespace)
    label = f"Trigger {name}"
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        raise ConfigError(origin, label, "spec is required")
    unknown = set(spec) - TRIGGER_SPEC_FIELDS
    if unknown:
        raise ConfigError(origin, label, f"unknown spec field(s): {', '.join(sorted(unknown))}")
    broker = spec.get("broker")
    if not isinstance(broker, str) or not broker:
        raise ConfigError(origin, label, "spec.broker is required")
    broker_spec = brokers.get(f"{namespace}/{broker}")
    if broker_spec is None:
        raise ConfigError(origin, label, f"broker {namespace}/{broker} is not defined")
    resolve = _resolver(function_names, namespace)
    try:
        subscriber = resolve(spec.get("subscriber"), "spec.subscriber")
        delivery = parse_delivery(spec.get("delivery"), resolve, broker_spec.delivery)
        filt = compile_trigger_filter(spec)
    except (ValueError, FilterError) as exc:
        raise ConfigError(origin, label, str(exc)) from None
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    parallelism = _parallelism(origin, label, annotations)
    return TriggerSpec(
        namespace,
        name,
        broker,
        subscriber,
        filt,
        delivery,
        parallelism,
        annotations,
        dict(spec),
        origin,
    )


def _parallelism(origin: str, label: str, annotations: Mapping[str, str]) -> int:
    raw = annotations.get(PARALLELISM_ANNOTATION)
    if raw is None:
        return DEFAULT_PARALLELISM
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(origin, label, f"{PARALLELISM_ANNOTATION} must be a positive integer")
    return value


def _function_triggers(
    functions: Sequence[FunctionSubscriptions], brokers: Mapping[str, BrokerSpec]
) -> list[TriggerSpec]:
    triggers: list[TriggerSpec] = []
    for function in functions:
        for index, (broker, filters) in enumerate(function.subscriptions):
            label = f"deploy.subscriptions[{index}]"
            broker_spec = brokers.get(f"{function.namespace}/{broker}")
            if broker_spec is None:
                raise ConfigError(
                    function.origin, label, f"broker {function.namespace}/{broker} is not defined"
                )
            try:
                filt = compile_attributes(filters)
            except FilterError as exc:
                raise ConfigError(function.origin, label, str(exc)) from None
            triggers.append(
                TriggerSpec(
                    function.namespace,
                    f"{function.name}-sub-{index}",
                    broker,
                    Destination(function=function.name),
                    filt,
                    broker_spec.delivery,
                    raw_spec={"broker": broker, "filter": {"attributes": dict(filters)}},
                    origin=function.origin,
                )
            )
    return triggers
