"""tests/crds.py: what a cluster would refuse, checked offline against the upstream CRDs in
../shared/crds and the `kubernetes` client's models. Each case is a mistake a manifest or a
generated object can really make."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests import crds


@pytest.fixture(autouse=True)
def _shared() -> None:
    crds.require_shared()


def _run(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "build-1", "namespace": "ci"},
        "spec": {"pipelineRef": {"name": "build"}, **spec},
    }


def _fields(obj: dict[str, Any]) -> dict[str, str]:
    return {p.field: p.reason for p in crds.problems(obj)}


def test_a_valid_pipelinerun_passes() -> None:
    run = _run(
        params=[{"name": "a", "value": "x"}, {"name": "b", "value": ["1", "2"]}],
        workspaces=[{"name": "w", "emptyDir": {"sizeLimit": "1Gi"}}],
        taskRunTemplate={"serviceAccountName": "runner"},
        timeouts={"pipeline": "1h"},
    )
    crds.validate(run)


def test_unknown_fields_are_rejected_where_the_schema_is_structural() -> None:
    run = _run(serviceAccountName="runner", workspaces=[{"name": "w", "emptyDirr": {}}])
    assert _fields(run) == {
        "spec.serviceAccountName": "FieldValueUnknown",
        "spec.workspaces[0].emptyDirr": "FieldValueUnknown",
    }
    with pytest.raises(crds.ManifestError, match=r'unknown field "spec.serviceAccountName"'):
        crds.validate(run)


def test_preserve_unknown_nodes_take_anything() -> None:
    run = _run(
        params=[{"name": "o", "value": {"any": {"nested": [1, True]}}}],
        pipelineSpec={"tasks": [{"name": "t", "whatever": 1}]},
    )
    assert crds.problems(run) == []


def test_types_required_and_int_or_string() -> None:
    run = _run(
        params=[{"name": "a"}],
        taskRunTemplate={"serviceAccountName": 3},
        workspaces=[{"name": "w", "emptyDir": {"sizeLimit": ["1Gi"]}}],
    )
    assert _fields(run) == {
        "spec.params[0].value": "FieldValueRequired",
        "spec.taskRunTemplate.serviceAccountName": "FieldValueTypeInvalid",
        "spec.workspaces[0].emptyDir.sizeLimit": "FieldValueTypeInvalid",
    }


def test_list_map_keys_must_be_unique() -> None:
    claims = {"computeResources": {"claims": [{"name": "gpu"}, {"name": "gpu"}]}}
    run = _run(taskRunSpecs=[{"pipelineTaskName": "t", **claims}])
    assert _fields(run) == {
        "spec.taskRunSpecs[0].computeResources.claims[1]": "FieldValueDuplicate"
    }


def test_the_version_named_is_the_schema_used() -> None:
    old = _run(serviceAccountName="runner")
    old["apiVersion"] = "tekton.dev/v1beta1"
    assert crds.problems(old) == []  # v1beta1 is served and still has spec.serviceAccountName
    gone = _run()
    gone["apiVersion"] = "tekton.dev/v2"
    assert _fields(gone) == {"apiVersion": "FieldValueNotSupported"}


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"name": "a.b"}, "metadata.name"),  # Tekton: no dots
        ({"name": "x" * 64}, "metadata.name"),
        ({"generateName": "Build-"}, "metadata.generateName"),
        ({}, "metadata.name"),
        ({"name": "ok", "labels": {"a": "b/c"}}, "metadata.labels[a]"),
        ({"name": "ok", "labels": {"-bad": "v"}}, "metadata.labels[-bad]"),
        ({"name": "ok", "annotations": {"a": 1}}, "metadata.annotations[a]"),
        ({"name": "ok", "namespace": "Not_Valid"}, "metadata.namespace"),
        ({"name": "ok", "label": {}}, "metadata.label"),
    ],
)
def test_metadata_is_checked(meta: dict[str, Any], field: str) -> None:
    run = _run()
    run["metadata"] = meta
    assert field in _fields(run)


def test_generate_name_alone_is_enough() -> None:
    run = _run()
    run["metadata"] = {"generateName": "build-"}
    assert crds.problems(run) == []


TRIGGER: dict[str, Any] = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Trigger",
    "metadata": {"name": "t", "namespace": "default"},
    "spec": {
        "broker": "default",
        "filters": [{"exact": {"type": "x", "anything": "goes"}}],
        "subscriber": {
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "s"}
        },
        "delivery": {"retry": 2, "timeout": "PT10S"},
    },
}


def test_knative_eventing_webhook_strictness() -> None:
    assert crds.problems(TRIGGER) == []  # delivery.timeout is known to the webhook
    trigger = copy.deepcopy(TRIGGER)
    trigger["spec"]["filtr"] = {}
    trigger["spec"]["delivery"]["retries"] = 3
    assert _fields(trigger) == {
        "spec.filtr": "FieldValueUnknown",
        "spec.delivery.retries": "FieldValueUnknown",
    }


def test_unknown_kinds_are_refused() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert _fields(obj) == {"kind": "FieldValueNotSupported"}
    assert _fields({"kind": "Widget"}) == {"apiVersion": "FieldValueRequired"}


ROLE_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "RoleBinding",
    "metadata": {"name": "rb", "namespace": "default"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
    "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"roleRef": None}, "roleRef"),
        (
            {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Rol", "name": "r"}},
            "roleRef.kind",
        ),
        ({"subjects": [{"kind": "Robot", "name": "x"}]}, "subjects[0].kind"),
        ({"subject": []}, "subject"),
    ],
)
def test_builtin_kinds_use_the_client_models_and_rbac_rules(
    change: dict[str, Any], field: str
) -> None:
    binding = {k: v for k, v in {**ROLE_BINDING, **change}.items() if v is not None}
    assert crds.problems(ROLE_BINDING) == []
    assert field in _fields(binding)


def test_role_rules_need_verbs_and_groups() -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "r", "namespace": "default"},
        "rules": [{"resources": ["pipelineruns"], "verbs": []}],
    }
    assert _fields(role) == {
        "rules[0].verbs": "FieldValueRequired",
        "rules[0].apiGroups": "FieldValueRequired",
    }


def test_workloads() -> None:
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": 1}}}]
                },
            },
        },
    }
    assert crds.problems(deployment) == []  # a Quantity may be a number
    deployment["spec"]["template"]["metadata"]["labels"] = {"app": "e"}
    deployment["spec"]["replicas"] = "2"
    assert _fields(deployment) == {
        "spec.template.metadata.labels": "FieldValueInvalid",
        "spec.replicas": "FieldValueInvalid",
    }


def test_scope_and_config_keys() -> None:
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "ci", "namespace": "x"},
    }
    assert _fields(namespace) == {"metadata.namespace": "FieldValueForbidden"}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a b": "x", "n": 1},
    }
    assert _fields(config_map) == {"data.n": "FieldValueInvalid", "data[a b]": "FieldValueInvalid"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "1svc"},
        "spec": {"type": "Public", "ports": [{"port": 80}, {"port": 70000}]},
    }
    assert set(_fields(service)) == {
        "metadata.name",
        "spec.type",
        "spec.ports[0].name",
        "spec.ports[1].name",
        "spec.ports[1].port",
    }


def test_a_kind_in_the_wrong_group_is_not_builtin() -> None:
    assert crds.builtin_kind("apps/v1", "ConfigMap") is None
    assert crds.builtin_kind("v1", "ConfigMap") is not None
    cluster_role = crds.builtin_kind("rbac.authorization.k8s.io/v1", "ClusterRole")
    assert cluster_role is not None
    assert cluster_role[1] is False  # cluster-scoped


def test_schema_validator_prunes_like_the_apiserver() -> None:
    run = _run(extra=1, workspaces=[{"name": "w", "emptyDir": {}, "bogus": True}])
    validator = crds.schema_validator("tekton.dev/v1", "PipelineRun")
    assert validator.prune(run) == ["spec.extra", "spec.workspaces[0].bogus"]
    assert run["spec"] == {
        "pipelineRef": {"name": "build"},
        "workspaces": [{"name": "w", "emptyDir": {}}],
    }
    assert crds.problems(run) == []


def test_without_the_shared_crds_the_check_skips(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(crds.SHARED_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(pytest.skip.Exception, match="CEMESH_SHARED"):
        crds.validate(_run())
