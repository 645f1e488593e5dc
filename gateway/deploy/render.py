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

This module is the entry point: `render` picks a target and `write` lays out what it rendered.
The targets are knative.py and standalone.py, and the pieces they share (options, the result,
metadata, delivery, YAML dumping) are in manifests.py, not here, so that the targets need not
import this module, which imports them (no import cycle).
"""

from __future__ import annotations

from pathlib import Path

from gateway.deploy.knative import render_knative
from gateway.deploy.manifests import Rendered, RenderOptions, Target, dump, dump_all
from gateway.deploy.standalone import render_standalone
from gateway.mesh import LoadedConfig


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
