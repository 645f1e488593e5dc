"""config/tekton: every object is one a cluster would accept (tests/crds.py: upstream CRDs in
../shared/crds with unknown fields rejected, built-in kinds against the client's models), the
kustomization builds offline, and the pieces fit: the Trigger routes the type the CDEvents
schema defines to a function that exists, the Role grants exactly what the function does, the
function's func.yaml names the ServiceAccount and ConfigMap defined here, the bindings parse,
and the Pipeline takes every param and workspace the default binding gives it."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from brokers.triggers import FunctionSubscriptions, load_config
from tests import crds
from tests.conftest import REPO, shared_path

TEKTON = REPO / "config" / "tekton"
FUNCTION = REPO / "functions" / "tekton-trigger"
MANIFESTS = sorted(p for p in TEKTON.glob("*.yaml") if p.name != "kustomization.yaml")


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in crds.load_documents(path):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def _function_module(name: str) -> ModuleType:
    """A module of the function's own package, loaded under a name of its own."""
    package = "tekton_trigger_manifest_check"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package,
            FUNCTION / "function" / "__init__.py",
            submodule_search_locations=[str(FUNCTION / "function")],
        )
        if spec is None or spec.loader is None:
            raise ImportError("cannot load functions/tekton-trigger")
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.{name}")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_accepted(path: Path) -> None:
    crds.require_shared()
    documents = crds.load_documents(path)
    assert documents
    for doc in documents:
        crds.validate(doc)


def test_the_kustomization_lists_every_manifest_and_builds() -> None:
    listed = yaml.safe_load((TEKTON / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFESTS]
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (kubectl kustomize runs offline)")
    crds.require_shared()
    built = subprocess.run(
        [kubectl, "kustomize", str(TEKTON)], capture_output=True, text=True, timeout=60, check=True
    )
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert len(documents) == len(_objects())
    for doc in documents:
        crds.validate(doc)


def test_the_trigger_routes_change_merged_to_the_function() -> None:
    schema = json.loads(
        shared_path("conformance/cdevents-0.5.1/schemas/changemerged.json").read_text()
    )
    (merged_type,) = schema["properties"]["context"]["properties"]["type"]["enum"]
    trigger = _objects()[("Trigger", "tekton-trigger-change-merged")]
    assert trigger["spec"]["filter"] == {"attributes": {"type": merged_type}}
    assert trigger["spec"]["broker"] == "default"
    assert trigger["spec"]["subscriber"] == {
        "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "tekton-trigger"}
    }
    func_yaml = yaml.safe_load((FUNCTION / "func.yaml").read_text())
    assert func_yaml["name"] == "tekton-trigger"
    assert func_yaml["invoke"] == "cloudevent"
    assert "subscriptions" not in func_yaml.get("deploy", {})  # the Trigger is the one route


def test_cemesh_up_loads_config_with_the_function() -> None:
    """What `cemesh up` does with config/: the Trigger resolves to the local function."""
    functions = [
        FunctionSubscriptions(p.parent.name, "default", [], str(p))
        for p in (REPO / "functions").glob("*/func.yaml")
    ]
    config = load_config(REPO / "config", functions)
    (trigger,) = [t for t in config.triggers if t.name == "tekton-trigger-change-merged"]
    assert trigger.subscriber.function == "tekton-trigger"
    assert trigger.delivery.retry == 6
    skipped = {(s.kind, s.name) for s in config.skipped}
    assert ("Pipeline", "build-and-test") in skipped
    assert ("ConfigMap", "config-events") in skipped


def test_the_role_grants_create_and_get_on_pipelineruns_only() -> None:
    objects = _objects()
    role = objects[("Role", "tekton-trigger")]
    assert role["rules"] == [
        {"apiGroups": ["tekton.dev"], "resources": ["pipelineruns"], "verbs": ["create", "get"]}
    ]
    binding = objects[("RoleBinding", "tekton-trigger")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "tekton-trigger",
    }
    account = objects[("ServiceAccount", "tekton-trigger")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "tekton-trigger", "namespace": "default"}
    ]
    assert role["metadata"]["namespace"] == account["metadata"]["namespace"] == "default"
    deploy = yaml.safe_load((FUNCTION / "func.yaml").read_text())["deploy"]
    assert deploy["serviceAccountName"] == account["metadata"]["name"]


def test_tekton_sends_its_events_to_the_gateway() -> None:
    events = _objects()[("ConfigMap", "config-events")]
    assert events["metadata"]["namespace"] == "tekton-pipelines"
    assert events["data"]["formats"] == "tektonv1"
    assert events["data"]["sink"].split("?")[0].endswith("/webhooks/tekton")


def test_the_bindings_configmap_is_mounted_and_parses() -> None:
    config_map = _objects()[("ConfigMap", "tekton-trigger-bindings")]
    text = config_map["data"]["bindings.yaml"]
    assert text == (FUNCTION / "function" / "bindings.yaml").read_text()
    bindings = _function_module("bindings")
    parsed = bindings.parse_bindings(yaml.safe_load(text), "config/tekton/bindings.yaml")
    assert parsed.bindings
    (volume,) = yaml.safe_load((FUNCTION / "func.yaml").read_text())["run"]["volumes"]
    assert volume == {"configMap": "tekton-trigger-bindings", "path": "/etc/tekton-trigger"}
    func = _function_module("func")
    assert Path(volume["path"]) / "bindings.yaml" == func.MOUNTED_BINDINGS


def test_the_pipeline_takes_what_the_default_binding_gives() -> None:
    bindings = _function_module("bindings")
    shipped = bindings.load_bindings(FUNCTION / "function" / "bindings.yaml")
    pipelines = {name: doc for (kind, name), doc in _objects().items() if kind == "Pipeline"}
    for binding in shipped.bindings:
        pipeline = pipelines[binding.pipeline]["spec"]
        declared = {p["name"] for p in pipeline.get("params", [])}
        required = {p["name"] for p in pipeline.get("params", []) if "default" not in p}
        given = {p.name for p in binding.params}
        assert given <= declared, f"{binding.name} passes params the Pipeline does not declare"
        assert required <= given, f"{binding.name} misses required params"
        workspaces = {w["name"] for w in pipeline.get("workspaces", [])}
        assert {w["name"] for w in binding.workspaces} == workspaces
