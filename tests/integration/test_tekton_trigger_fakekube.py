"""The fake Kubernetes API that tekton-trigger's tests run against, spoken to by the real
`kubernetes` client over HTTP on 127.0.0.1: if the fake does not behave like an apiserver
where the client and the function rely on it, their tests prove nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tests import crds
from tests.fakekube import FakeKube, Resource

GROUP, VERSION, PLURAL = "tekton.dev", "v1", "pipelineruns"


@pytest.fixture
def kube_namespaces() -> set[str]:
    return {"default", "ci"}


def _api_client(kube: FakeKube, tmp_path: Path) -> Any:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        client_configuration=configuration,
        persist_config=False,
    )
    return client.ApiClient(configuration)


@pytest.fixture
def api(kube: FakeKube, tmp_path: Path) -> Iterator[Any]:
    api_client = _api_client(kube, tmp_path)
    yield client.CustomObjectsApi(api_client)
    api_client.close()


def _run(name: str | None = "build-1", **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name} if name else {"generateName": "build-"}
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {**meta, "labels": {"app": "demo"}},
        "spec": {"pipelineRef": {"name": "build"}, **spec},
    }


def _create(api: Any, body: dict[str, Any], namespace: str = "default", **kw: Any) -> Any:
    return api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, **kw)


def _status(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body or "{}")
    assert body["kind"] == "Status"
    assert body["code"] == exc.status
    return body


def test_create_answers_201_with_server_set_metadata(api: Any, kube: FakeKube) -> None:
    created = _create(api, _run())
    meta = created["metadata"]
    assert kube.requests[-1].status == 201
    assert meta["name"] == "build-1"
    assert meta["namespace"] == "default"
    assert meta["uid"]
    assert meta["resourceVersion"]
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert kube.requests[-1].headers["authorization"] == "Bearer fakekube-token"


def test_resource_versions_increase_with_every_write(api: Any) -> None:
    first = _create(api, _run("a"))
    second = _create(api, _run("b"))
    listed = api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    versions = [
        int(first["metadata"]["resourceVersion"]),
        int(second["metadata"]["resourceVersion"]),
        int(listed["metadata"]["resourceVersion"]),
    ]
    assert versions[0] < versions[1] <= versions[2]
    assert listed["kind"] == "PipelineRunList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]


def test_generate_name_gets_five_characters(api: Any) -> None:
    names = {_create(api, _run(None))["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3
    for name in names:
        assert name.startswith("build-")
        assert len(name) == len("build-") + 5


def test_a_second_create_is_409_already_exists(api: Any, kube: FakeKube) -> None:
    _create(api, _run())
    with pytest.raises(ApiException) as caught:
        _create(api, _run())
    status = _status(caught.value)
    assert caught.value.status == 409
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'pipelineruns.tekton.dev "build-1" already exists'
    assert status["details"] == {"name": "build-1", "group": "tekton.dev", "kind": "pipelineruns"}
    assert len(kube.objects(PLURAL)) == 1


def test_get_of_a_missing_object_is_404_not_found(api: Any) -> None:
    with pytest.raises(ApiException) as caught:
        api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "nope")
    assert caught.value.status == 404
    assert _status(caught.value)["reason"] == "NotFound"


def test_an_unknown_namespace_is_404(api: Any) -> None:
    with pytest.raises(ApiException) as caught:
        _create(api, _run(), namespace="elsewhere")
    assert caught.value.status == 404
    assert _status(caught.value)["message"] == 'namespaces "elsewhere" not found'


def test_an_object_the_crd_schema_refuses_is_422_invalid(api: Any, kube: FakeKube) -> None:
    body = _run(timeouts={"pipeline": 60}, workspaces=[{"name": "w", "emptyDirr": {}}])
    with pytest.raises(ApiException) as caught:
        _create(api, body)
    status = _status(caught.value)
    assert caught.value.status == 422
    assert status["reason"] == "Invalid"
    assert status["message"].startswith('PipelineRun.tekton.dev "build-1" is invalid: [')
    causes = {c["field"]: c["reason"] for c in status["details"]["causes"]}
    assert causes == {
        "spec.timeouts.pipeline": "FieldValueTypeInvalid",
        "spec.workspaces[0].emptyDirr": "FieldValueUnknown",
    }
    assert kube.objects(PLURAL) == []


def test_strict_field_validation_is_400_like_the_apiserver(api: Any) -> None:
    with pytest.raises(ApiException) as caught:
        _create(api, _run(extra=True), field_validation="Strict")
    assert caught.value.status == 400
    assert _status(caught.value)["message"] == 'strict decoding error: unknown field "spec.extra"'


def test_prune_mode_drops_unknown_fields_with_a_warning(tmp_path: Path) -> None:
    crds.require_shared()
    with FakeKube(unknown_fields="prune") as kube:
        api_client = _api_client(kube, tmp_path)
        api = client.CustomObjectsApi(api_client)
        data, status, headers = api.create_namespaced_custom_object_with_http_info(
            GROUP, VERSION, "default", PLURAL, _run(extra=True)
        )
        api_client.close()
    assert status == 201
    assert isinstance(data, dict)
    assert "extra" not in data["spec"]
    assert headers["Warning"] == '299 - "unknown field "spec.extra""'


def test_body_contradicting_the_url_is_400(api: Any) -> None:
    body = _run()
    body["metadata"]["namespace"] = "ci"
    with pytest.raises(ApiException) as caught:
        _create(api, body)
    assert caught.value.status == 400
    task = _run()
    task["kind"] = "TaskRun"
    with pytest.raises(ApiException) as caught:
        _create(api, task)
    assert caught.value.status == 400


def test_list_by_label_selector_and_delete(api: Any, kube: FakeKube) -> None:
    one, two = _run("one"), _run("two")
    two["metadata"]["labels"] = {"app": "other", "tier": "x"}
    _create(api, one)
    _create(api, two)
    for selector, names in [
        ("app=demo", ["one"]),
        ("app!=demo", ["two"]),
        ("tier", ["two"]),
        ("!tier", ["one"]),
    ]:
        found = api.list_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, label_selector=selector
        )
        assert [i["metadata"]["name"] for i in found["items"]] == names, selector
    everywhere = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert len(everywhere["items"]) == 2
    api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "one")
    assert [o["metadata"]["name"] for o in kube.objects(PLURAL)] == ["two"]
    with pytest.raises(ApiException) as caught:
        api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "one")
    assert caught.value.status == 404


def test_replace_needs_the_current_resource_version(api: Any) -> None:
    created = _create(api, _run())
    stale = json.loads(json.dumps(created))
    created["spec"]["timeouts"] = {"pipeline": "1h"}
    replaced = api.replace_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "build-1", created
    )
    assert replaced["metadata"]["generation"] == 2
    assert int(replaced["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])
    with pytest.raises(ApiException) as caught:
        api.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "build-1", stale)
    assert caught.value.status == 409
    assert _status(caught.value)["reason"] == "Conflict"


def test_status_is_a_subresource(api: Any, kube: FakeKube) -> None:
    _create(api, _run())
    done = {"conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}]}
    kube.set_status(PLURAL, "default", "build-1", done)
    got = api.get_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, "build-1")
    assert got["status"] == done
    assert got["metadata"]["generation"] == 1


@pytest.mark.parametrize(
    ("code", "reason", "fragment"),
    [
        (503, "ServiceUnavailable", "unable to handle the request"),
        (403, "Forbidden", 'cannot create resource "pipelineruns" in API group "tekton.dev"'),
        (500, "InternalError", "has prevented the request from succeeding"),
        (429, "TooManyRequests", "Too many requests"),
    ],
)
def test_faults_answer_a_status_object(
    api: Any, kube: FakeKube, code: int, reason: str, fragment: str
) -> None:
    kube.fail(code, retry_after=2 if code == 429 else None)
    with pytest.raises(ApiException) as caught:
        _create(api, _run())
    status = _status(caught.value)
    assert (caught.value.status, status["reason"]) == (code, reason)
    assert fragment in status["message"]
    if code == 429:
        assert caught.value.headers is not None
        assert caught.value.headers["Retry-After"] == "2"
    assert _create(api, _run())["metadata"]["name"] == "build-1"  # one fault, then normal


def test_a_wrong_token_is_401(kube: FakeKube, tmp_path: Path) -> None:
    configuration = client.Configuration()
    configuration.host = kube.url
    configuration.api_key = {"authorization": "Bearer wrong"}
    with client.ApiClient(configuration) as api_client, pytest.raises(ApiException) as caught:
        client.CustomObjectsApi(api_client).list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert caught.value.status == 401


def test_discovery_serves_the_dynamic_client(kube: FakeKube, tmp_path: Path) -> None:
    api_client = _api_client(kube, tmp_path)
    dynamic = DynamicClient(api_client)  # type: ignore[no-untyped-call]
    runs = dynamic.resources.get(api_version="tekton.dev/v1", kind="PipelineRun")
    runs.create(body=_run(), namespace="default")
    (item,) = runs.get(namespace="default").items
    api_client.close()
    assert item.metadata.name == "build-1"
    assert {r.path for r in kube.requests} >= {"/version", "/apis", "/apis/tekton.dev/v1"}


def test_builtin_resources_are_validated_with_the_client_models(tmp_path: Path) -> None:
    crds.require_shared()
    config_maps = Resource.builtin("v1", "ConfigMap", "configmaps")
    with FakeKube([config_maps]) as kube:
        api_client = _api_client(kube, tmp_path)
        core = client.CoreV1Api(api_client)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"k": "v"})
        created = core.create_namespaced_config_map("default", body)
        bad = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="d"), data={"not a key": "v"})
        with pytest.raises(ApiException) as caught:
            core.create_namespaced_config_map("default", bad)
        api_client.close()
    assert created.metadata is not None
    assert created.metadata.uid
    assert caught.value.status == 422


def test_every_stored_object_validates_against_the_crd(api: Any, kube: FakeKube) -> None:
    _create(api, _run(None, params=[{"name": "a", "value": "1"}]))
    _create(api, _run("b", workspaces=[{"name": "w", "emptyDir": {}}]))
    for obj in kube.objects(PLURAL):
        crds.validate(obj)
