"""`cemesh render` (issue 8): every object it writes is one a cluster would accept.

Objects are checked with tests/crds.py: custom resources against the upstream CRD schemas in
`../shared/crds` (unknown fields rejected, Knative eventing's webhook strictness included),
built-in kinds against the `kubernetes` client's strict models. `kubectl kustomize` (offline)
must build both rendered directories and `config/`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from brokers.errors import ConfigError
from brokers.triggers import load_config
from gateway.cli.render import add_commands
from gateway.deploy.knative import BROKER_CLASS_ANNOTATION, DEGRADED_ANNOTATION, exact_only
from gateway.deploy.manifests import Rendered, RenderOptions, iso_duration
from gateway.deploy.render import render
from gateway.deploy.standalone import MESH_CONFIG_KEY
from gateway.hosting.funcyaml import load_func_yaml
from gateway.mesh import LoadedConfig, load_mesh
from gateway.settings import Settings
from tests import crds
from tests.builders import broker_yaml, documents, subscriber, trigger_yaml
from tests.conftest import REPO


def _sink(path: str) -> str:
    return f"http://sink.example/{path}"


DEGRADED_CONFIG = documents(
    broker_yaml(
        delivery={
            "retry": 2,
            "backoffPolicy": "linear",
            "backoffDelay": "PT0.5S",
            "timeout": "PT5S",
            "deadLetterSink": subscriber("http://dead.example/letters"),
        }
    ),
    trigger_yaml(
        "exact-filters",
        function="greeter",
        filters=[{"exact": {"type": "com.example.a"}}, {"all": [{"exact": {"source": "/s"}}]}],
    ),
    trigger_yaml(
        "by-prefix",
        _sink("b"),
        filters=[{"exact": {"type": "com.example.b"}}, {"prefix": {"source": "/orders"}}],
    ),
    trigger_yaml(
        "by-cesql",
        _sink("c"),
        filters=[{"cesql": "type LIKE 'com.example.%'"}],
        delivery={"retry": 1, "deadLetterSink": subscriber(function="greeter")},
    ),
    trigger_yaml("legacy", _sink("d"), attributes={"type": "com.example.d", "subject": ""}),
)

DATA_TRIGGER = "---\n" + trigger_yaml(
    "by-data",
    _sink("e"),
    filters=[{"exact": {"type": "com.example.order"}}, {"data": "data.total > 100"}],
)


def _mesh(config: Path, functions: Path = REPO / "functions") -> LoadedConfig:
    return load_mesh(Settings.model_validate({"config": config, "functions": functions}))


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cemesh")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["render", *argv])
    result: int = args.run(args)
    return result


def _by_kind(rendered: Rendered) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in rendered.objects():
        out.setdefault(f"{obj['apiVersion']} {obj['kind']}", []).append(obj)
    return out


@pytest.fixture
def degraded_config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    text = DEGRADED_CONFIG
    try:
        load_config(_write(tmp_path / "probe", DATA_TRIGGER))
        text += DATA_TRIGGER  # the data dialect (issue 4) is there: check it too
    except ConfigError:
        pass  # no data dialect (or no CEL library) in this tree: the others still cover it
    (config / "mesh.yaml").write_text(text)
    return config


def _write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "t.yaml").write_text(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default}\n" + text
    )
    return directory


# Knative's DeliverySpec Go struct has `timeout` (feature delivery-timeout, Beta, on by
# default), so the eventing webhook accepts it although the CRDs leave it to
# x-kubernetes-preserve-unknown-fields (crds/README.md: "for the experimental `timeout`").
WEBHOOK_KNOWN = frozenset({"spec.delivery.timeout"})


def validate(obj: dict[str, Any]) -> None:
    """tests/crds.py's check, less the DeliverySpec fields the eventing webhook knows."""
    found = [
        p
        for p in crds.problems(obj)
        if not (p.reason == "FieldValueUnknown" and p.field in WEBHOOK_KNOWN)
    ]
    if found:
        raise crds.ManifestError(crds.label_of(obj), found)


def _validate_all(rendered: Rendered) -> None:
    crds.require_shared()
    failures = [str(e) for e in _errors(rendered.objects())]
    assert failures == []


def _errors(objects: list[dict[str, Any]]) -> Iterator[crds.ManifestError]:
    for obj in objects:
        try:
            validate(obj)
        except crds.ManifestError as exc:
            yield exc


# ------------------------------------------------------------------ knative


def test_knative_target_validates_and_wires_broker_to_cluster() -> None:
    rendered = render("knative", _mesh(REPO / "config"))
    _validate_all(rendered)
    kinds = _by_kind(rendered)
    (cluster,) = kinds["rabbitmq.com/v1beta1 RabbitmqCluster"]
    configs = {
        c["metadata"]["name"]: c
        for c in kinds["eventing.knative.dev/v1alpha1 RabbitmqBrokerConfig"]
    }
    for broker in kinds["eventing.knative.dev/v1 Broker"]:
        assert broker["metadata"]["annotations"][BROKER_CLASS_ANNOTATION] == "RabbitMQBroker"
        ref = broker["spec"]["config"]
        assert (ref["apiVersion"], ref["kind"]) == (
            "eventing.knative.dev/v1alpha1",
            "RabbitmqBrokerConfig",
        )
        config = configs[ref["name"]]
        assert config["spec"]["rabbitmqClusterReference"]["name"] == cluster["metadata"]["name"]
        assert config["spec"]["queueType"] == "quorum"
    assert rendered.degraded == ()


def test_func_yaml_subscriptions_render_as_func_deploy_makes_them() -> None:
    loaded = _mesh(REPO / "config")
    triggers = {
        t["metadata"]["name"]: t
        for t in _by_kind(render("knative", loaded))["eventing.knative.dev/v1 Trigger"]
    }
    for project in loaded.functions:
        spec = load_func_yaml(project.path / "func.yaml")
        for index, sub in enumerate(spec.deploy.subscriptions if spec.deploy else []):
            trigger = triggers[f"{project.name}-function-trigger-{index}"]
            assert trigger["spec"] == {
                "broker": sub.source,
                "filter": {"attributes": dict(sub.filters)},
                "subscriber": {
                    "ref": {
                        "apiVersion": "serving.knative.dev/v1",
                        "kind": "Service",
                        "name": project.name,
                    }
                },
            }


def test_non_exact_filters_are_reported_per_trigger(degraded_config: Path) -> None:
    rendered = render("knative", _mesh(degraded_config))
    degraded = {d.trigger.name: d.reason for d in rendered.degraded}
    assert set(degraded) - {"by-data"} == {"by-prefix", "by-cesql"}
    assert "prefix" in degraded["by-prefix"]
    assert "type=com.example.b" in degraded["by-prefix"]
    assert "cesql" in degraded["by-cesql"]
    assert "every event of the broker" in degraded["by-cesql"]
    if "by-data" in degraded:
        assert "data" in degraded["by-data"]


def test_render_refuses_degraded_triggers_one_line_each(
    degraded_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = _run("--target", "knative", "--config", str(degraded_config), "-o", str(out))
    assert code == 2
    lines = capsys.readouterr().err.splitlines()
    names = {"by-prefix", "by-cesql", "by-data"}
    assert len(lines) in (2, 3)
    for line in lines:
        assert str(degraded_config / "mesh.yaml") in line
        assert any(f"Trigger default/{n}:" in line for n in names)
    assert not out.exists(), "nothing is written when refused"


def test_allow_degraded_renders_the_exact_part(
    degraded_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = _run(
        "--target", "knative", "--config", str(degraded_config), "--allow-degraded", "-o", str(out)
    )
    assert code == 0
    assert "degraded" in capsys.readouterr().err
    triggers = {d["metadata"]["name"]: d for d in crds.load_documents(out / "triggers.yaml")}
    for obj in triggers.values():
        validate(obj)
    prefix = triggers["by-prefix"]
    assert prefix["spec"]["filter"] == {"attributes": {"type": "com.example.b"}}
    assert "filters" not in prefix["spec"]
    assert DEGRADED_ANNOTATION in prefix["metadata"]["annotations"]
    assert "filter" not in triggers["by-cesql"]["spec"]
    exact = triggers["exact-filters"]["spec"]
    assert exact["filter"] == {"attributes": {"type": "com.example.a", "source": "/s"}}
    assert DEGRADED_ANNOTATION not in triggers["exact-filters"]["metadata"].get("annotations", {})
    assert triggers["legacy"]["spec"]["filter"] == {
        "attributes": {"type": "com.example.d", "subject": ""}
    }
    dead = triggers["by-cesql"]["spec"]["delivery"]["deadLetterSink"]["ref"]
    assert dead["apiVersion"] == "serving.knative.dev/v1"
    (broker,) = [d for d in crds.load_documents(out / "brokers.yaml") if d["kind"] == "Broker"]
    assert broker["spec"]["delivery"] == {
        "retry": 2,
        "backoffPolicy": "linear",
        "backoffDelay": "PT0.5S",
        "timeout": "PT5S",
        "deadLetterSink": {"uri": "http://dead.example/letters"},
    }


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([{"exact": {"type": "a"}}], {"type": "a"}),
        (
            [{"exact": {"type": "a"}}, {"all": [{"exact": {"source": "b"}}]}],
            {"type": "a", "source": "b"},
        ),
        ([{"exact": {"type": "a"}}, {"exact": {"type": "b"}}], None),
        ([{"any": [{"exact": {"type": "a"}}]}], None),
        ([{"not": {"exact": {"type": "a"}}}], None),
        ([{"suffix": {"type": "a"}}], None),
    ],
)
def test_exact_only(filters: list[Any], expected: dict[str, str] | None) -> None:
    assert exact_only(filters) == expected


def test_iso_durations() -> None:
    assert [iso_duration(s) for s in (0.2, 10, 0.0, 1.5, 600)] == [
        "PT0.2S",
        "PT10S",
        "PT0S",
        "PT1.5S",
        "PT600S",
    ]


# ------------------------------------------------------------------ standalone


def test_standalone_target_validates_and_has_every_part() -> None:
    rendered = render("standalone", _mesh(REPO / "config"), RenderOptions(namespace="mesh"))
    _validate_all(rendered)
    kinds = _by_kind(rendered)
    assert set(kinds) == {
        "serving.knative.dev/v1 Service",
        "v1 ConfigMap",
        "rabbitmq.com/v1beta1 RabbitmqCluster",
        "apps/v1 Deployment",
        "v1 Service",
        "v1 ServiceAccount",
        "rbac.authorization.k8s.io/v1 Role",
        "rbac.authorization.k8s.io/v1 RoleBinding",
    }
    assert all(o["metadata"]["namespace"] == "mesh" for o in rendered.objects())
    (ksvc,) = kinds["serving.knative.dev/v1 Service"]
    (config_map,) = kinds["v1 ConfigMap"]
    template = ksvc["spec"]["template"]
    assert template["spec"]["volumes"][0]["configMap"]["name"] == config_map["metadata"]["name"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"
    (binding,) = kinds["rbac.authorization.k8s.io/v1 RoleBinding"]
    assert binding["subjects"][0]["name"] == template["spec"]["serviceAccountName"]
    (redis,) = kinds["v1 Service"]
    env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
    assert f"//{redis['metadata']['name']}:6379" in env["CEMESH_STATE_URL"]["value"]


def test_standalone_config_map_loads_without_functions(
    degraded_config: Path, tmp_path: Path
) -> None:
    """The in-cluster gateway hosts no functions: every subscriber must be a URL."""
    loaded = _mesh(degraded_config)
    rendered = render("standalone", loaded)
    (config_map,) = [o for o in rendered.objects() if o["kind"] == "ConfigMap"]
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    (mounted / MESH_CONFIG_KEY).write_text(config_map["data"][MESH_CONFIG_KEY])
    again = load_config(mounted, [], "default")
    assert len(again.triggers) == len(loaded.config.triggers)
    before = {t.name: t for t in loaded.config.triggers}
    for trigger in again.triggers:
        source = (
            before.get(trigger.name) or before[trigger.name.replace("-function-trigger-", "-sub-")]
        )
        assert trigger.filter.description == source.filter.description
        assert trigger.subscriber.function is None
        if source.subscriber.function:
            assert trigger.subscriber.uri == (
                f"http://{source.subscriber.function}.default.svc.cluster.local"
            )
    broker = again.brokers["default/default"]
    assert broker.delivery.dead_letter_sink is not None
    assert broker.delivery.dead_letter_sink.uri == "http://dead.example/letters"
    assert broker.delivery == loaded.config.brokers["default/default"].delivery.__class__(
        2, "linear", 0.5, 5.0, broker.delivery.dead_letter_sink
    )


def test_standalone_service_is_what_func_deploy_makes_of_the_root() -> None:
    """The rendered Knative Service and the root func.yaml describe the same pod."""
    root = load_func_yaml(REPO / "func.yaml")
    (ksvc,) = [
        o
        for o in render("standalone", _mesh(REPO / "config")).objects()
        if o["kind"] == "Service" and o["apiVersion"].startswith("serving")
    ]
    pod = ksvc["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert root.run is not None
    assert root.deploy is not None
    assert [_func_env(e.name or "", e.value or "") for e in root.run.envs] == container["env"]
    (volume,) = root.run.volumes or []
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == volume["path"]
    assert pod["volumes"][0]["configMap"]["name"] == volume["configMap"]
    assert pod["serviceAccountName"] == root.deploy.serviceAccountName
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert root.deploy.options is not None
    assert root.deploy.options.scale is not None
    assert annotations["autoscaling.knative.dev/min-scale"] == str(root.deploy.options.scale.min)
    assert annotations["autoscaling.knative.dev/max-scale"] == str(root.deploy.options.scale.max)
    assert root.deploy.healthEndpoints == {
        "liveness": container["livenessProbe"]["httpGet"]["path"],
        "readiness": container["readinessProbe"]["httpGet"]["path"],
    }


def _func_env(name: str, value: str) -> dict[str, Any]:
    """func's processEnvs: `{{ secret:NAME:KEY }}` becomes a secretKeyRef, the rest a value."""
    if value.startswith("{{"):
        kind, ref, key = (part.strip() for part in value.strip("{} ").split(":"))
        assert kind == "secret"
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref, "key": key}}}
    return {"name": name, "value": value}


# ------------------------------------------------------------------ files and kustomize


@pytest.mark.parametrize("target", ["knative", "standalone"])
def test_cli_writes_a_kustomization_that_builds(target: str, tmp_path: Path) -> None:
    out = tmp_path / target
    assert _run("--target", target, "--config", str(REPO / "config"), "-o", str(out)) == 0
    written = [
        d
        for f in sorted(out.glob("*.yaml"))
        if f.name != "kustomization.yaml"
        for d in crds.load_documents(f)
    ]
    for obj in written:
        validate(obj)
    built = _kustomize(out)
    assert len(built) == len(written)


def test_kustomize_builds_config() -> None:
    built = _kustomize(REPO / "config")
    for obj in built:
        validate(obj)
    kustomization = yaml.safe_load((REPO / "config" / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    for path in sorted((REPO / "config").glob("*.yaml")):
        docs = crds.load_documents(path)
        is_manifest = any(
            isinstance(d, dict) and d.get("apiVersion") and d.get("kind") for d in docs
        )
        if path.name != "kustomization.yaml" and is_manifest:
            assert path.name in listed, f"config/kustomization.yaml does not list {path.name}"
    for sub in sorted(p for p in (REPO / "config").iterdir() if p.is_dir()):
        if (sub / "kustomization.yaml").exists():
            assert sub.name in listed, f"config/kustomization.yaml does not list {sub.name}/"


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (kubectl kustomize runs offline)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_render_reports_config_errors_like_up(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "bad",
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        "metadata: {name: t}\nspec: {broker: nope, subscriber: {uri: 'http://x'}}\n",
    )
    with pytest.raises(ConfigError, match="Trigger t"):
        _run("--target", "knative", "--config", str(config), "-o", str(tmp_path / "o"))
