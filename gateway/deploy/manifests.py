"""The building blocks both `cemesh render` targets share: the options, the result, and the
pieces of Kubernetes YAML that come out the same for knative and standalone.

This module is split out of render.py so that knative.py and standalone.py can import what
they have in common without importing render.py, which imports them to pick a target (no
import cycle). It knows no target: the Knative-only and standalone-only objects live in
knative.py and standalone.py. The helpers every target calls (`metadata`, `delivery_yaml`,
`plain`, `function_trigger_names`, `rabbitmq_cluster`) are public for that reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import yaml

from brokers.delivery import DeliverySpec
from brokers.triggers import TriggerSpec
from gateway.hosting.python import FunctionProject

Target = Literal["knative", "standalone"]
Obj = dict[str, Any]

KSVC_API: Final = "serving.knative.dev/v1"
EVENTING_API: Final = "eventing.knative.dev/v1"
RABBITMQ_API: Final = "rabbitmq.com/v1beta1"
LABELS: Final = {"app.kubernetes.io/part-of": "cemesh", "app.kubernetes.io/managed-by": "cemesh"}
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


def rabbitmq_cluster(options: RenderOptions) -> Obj:
    return {
        "apiVersion": RABBITMQ_API,
        "kind": "RabbitmqCluster",
        "metadata": metadata(options.rabbitmq, options.namespace),
        "spec": {"replicas": options.rabbitmq_replicas},
    }


def function_trigger_names(projects: Sequence[FunctionProject]) -> dict[str, str]:
    """Trigger key as loaded -> the name `func deploy` gives the same subscription."""
    names: dict[str, str] = {}
    for project in projects:
        subs = project.subscriptions()
        for index in range(len(subs.subscriptions)):
            loaded_key = f"{subs.namespace}/{subs.name}-sub-{index}"
            names[loaded_key] = f"{subs.name}-function-trigger-{index}"
    return names


def metadata(
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


def delivery_yaml(spec: DeliverySpec, destination: Any) -> Obj:
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


def plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists (TriggerSpec holds read-only mappings)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
