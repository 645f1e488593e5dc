"""functions/tekton-trigger as Knative runs it: hosted by func-python's own
`func_python.cloudevent.ASGIApplication` on Hypercorn (real HTTP, lifespan start with the
process environment), creating PipelineRuns with the real `kubernetes` client against the fake
API server (tests/fakekube). Asserts what the broker would see: status codes, reply events,
and the objects that exist afterwards."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import hypercorn.asyncio
import hypercorn.config
import jsonschema
import pytest
import referencing

from tests import crds
from tests.conftest import REPO, free_port, shared_path
from tests.fakekube import FakeKube

PROJECT = REPO / "functions" / "tekton-trigger"
MERGED = "dev.cdevents.change.merged.0.3.0"
QUEUED = "dev.cdevents.pipelinerun.queued.0.3.0"
ENV_KEYS = (
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "CEMESH_FUNCTION",
    "TEKTON_TRIGGER_BINDINGS",
    "TEKTON_TRIGGER_DRY_RUN",
    "TEKTON_TRIGGER_NAMESPACE",
    "TEKTON_TRIGGER_SOURCE",
    "TEKTON_DASHBOARD_URL",
)


def load_function() -> ModuleType:
    """The project's `function` package under a name of its own (the root has a `function`)."""
    name = "tekton_trigger_under_test"
    if name not in sys.modules:
        package = PROJECT / "function"
        spec = importlib.util.spec_from_file_location(
            name, package / "__init__.py", submodule_search_locations=[str(package)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {package}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def change_merged(event_id: str = "5328c37f-bb7e-4bb7-84ea-9f5f85e4a7ce") -> dict[str, Any]:
    return {
        "context": {
            "specversion": "0.5.1",
            "id": event_id,
            "source": "https://github.com/octo-org/hello-world",
            "type": MERGED,
            "timestamp": "2026-11-22T10:00:00Z",
        },
        "subject": {
            "id": "42",
            "content": {
                "repository": {"id": "octo-org/hello-world", "source": "https://github.com"}
            },
        },
    }


def binary(data: dict[str, Any], **attributes: str) -> tuple[dict[str, str], bytes]:
    context = data["context"]
    headers = {
        "ce-specversion": "1.0",
        "ce-id": context["id"],
        "ce-source": context["source"],
        "ce-type": context["type"],
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in attributes.items()},
    }
    return headers, json.dumps(data).encode()


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean slate: func-python's start() reads the process environment."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@asynccontextmanager
async def hosted(env: pytest.MonkeyPatch, **variables: str) -> AsyncIterator[str]:
    """The function on Hypercorn at 127.0.0.1, started through ASGI lifespan like in a pod."""
    from func_python.cloudevent import ASGIApplication

    for key, value in variables.items():
        env.setenv(key, value)
    app = ASGIApplication(load_function().new())
    config = hypercorn.config.Config()
    port = free_port()
    config.bind = [f"127.0.0.1:{port}"]
    stop = asyncio.Event()
    server = asyncio.create_task(hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait))
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url + "/health/readiness") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.02)
    try:
        yield url
    finally:
        stop.set()
        await server


async def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, headers=headers, data=body) as r,
    ):
        return r.status, json.loads(await r.read())


def live(kube: FakeKube, tmp_path: Path) -> dict[str, str]:
    return {"KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))}


@pytest.fixture(scope="module")
def queued_schema() -> Any:
    """The official pipelinerun.queued schema, with every schema it refers to registered."""
    schemas = shared_path("conformance/cdevents-0.5.1/schemas")
    resources = []
    for path in sorted(schemas.rglob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        resources.append((document["$id"], referencing.Resource.from_contents(document)))
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(resources)
    schema = json.loads((schemas / "pipelinerunqueued.json").read_text("utf-8"))
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


async def test_a_merged_change_creates_a_pipelinerun_and_replies_queued(
    kube: FakeKube, tmp_path: Path, environment: pytest.MonkeyPatch, queued_schema: Any
) -> None:
    async with hosted(environment, **live(kube, tmp_path)) as url:
        status, reply = await post(url, *binary(change_merged()))
    assert status == 200
    assert reply["type"] == QUEUED
    cdevent = reply["data"]
    queued_schema.validate(cdevent)
    (run,) = kube.objects("pipelineruns", "default")
    crds.validate(run)
    meta = run["metadata"]
    assert reply["subject"] == cdevent["subject"]["id"] == f"default/{meta['name']}"
    assert cdevent["context"]["timestamp"] == meta["creationTimestamp"]
    assert cdevent["context"]["chainId"] == change_merged()["context"]["id"]
    assert cdevent["customData"] == {
        "dryRun": False,
        "pipelineRun": {"namespace": "default", "name": meta["name"], "uid": meta["uid"]},
    }
    assert cdevent["subject"]["content"]["uri"] == (
        f"{kube.url}/apis/tekton.dev/v1/namespaces/default/pipelineruns/{meta['name']}"
    )
    assert meta["labels"]["cemesh.dev/event-id"] == change_merged()["context"]["id"]
    assert meta["annotations"]["cemesh.dev/queued-id"] == reply["id"]
    assert {p["name"]: p["value"] for p in run["spec"]["params"]}["change-id"] == "42"


async def test_a_redelivered_event_gets_the_same_reply_and_no_second_run(
    kube: FakeKube, tmp_path: Path, environment: pytest.MonkeyPatch
) -> None:
    async with hosted(environment, **live(kube, tmp_path)) as url:
        first = await post(url, *binary(change_merged()))
        again = await post(url, *binary(change_merged()))
    assert first[0] == again[0] == 200
    assert first[1]["id"] == again[1]["id"]
    assert first[1]["data"] == again[1]["data"]
    assert len(kube.objects("pipelineruns")) == 1
    calls = [(r.method, r.status) for r in kube.requests]
    assert calls == [("POST", 201), ("POST", 409), ("GET", 200)]
    assert all(
        r.query.get("fieldValidation") == "Strict" for r in kube.requests if r.method == "POST"
    )


async def test_api_unavailable_is_503_and_the_retry_succeeds(
    kube: FakeKube, tmp_path: Path, environment: pytest.MonkeyPatch
) -> None:
    kube.fail(503)
    async with hosted(environment, **live(kube, tmp_path)) as url:
        failed = await post(url, *binary(change_merged()))
        retried = await post(url, *binary(change_merged()))
    assert failed[0] == 503
    assert failed[1]["type"] == "dev.functions.error"
    assert failed[1]["data"]["reason"] == "ServiceUnavailable"
    assert retried[0] == 200
    assert len(kube.objects("pipelineruns")) == 1


async def test_an_unreachable_api_is_503(
    kube: FakeKube, tmp_path: Path, environment: pytest.MonkeyPatch
) -> None:
    kubeconfig = live(kube, tmp_path)
    kube.stop()
    async with hosted(environment, **kubeconfig) as url:
        status, reply = await post(url, *binary(change_merged()))
    assert status == 503
    assert reply["data"]["reason"] == "Unreachable"
    assert "unreachable" in reply["data"]["message"]


async def test_forbidden_is_422_with_the_api_message(
    kube: FakeKube, tmp_path: Path, environment: pytest.MonkeyPatch
) -> None:
    kube.fail(403)
    async with hosted(environment, **live(kube, tmp_path)) as url:
        status, reply = await post(url, *binary(change_merged()))
    assert status == 422
    error = reply["data"]
    assert error["reason"] == "Forbidden"
    assert 'cannot create resource "pipelineruns" in API group "tekton.dev"' in error["message"]
    assert kube.objects("pipelineruns") == []


@pytest.mark.parametrize(
    ("extra", "status", "reason", "fragment"),
    [
        (
            "workspaces: [{name: source, emptyDirr: {}}]",
            422,
            "BadRequest",
            'unknown field "spec.workspaces[0].emptyDirr"',
        ),
        (
            "podTemplate: {nodeSelector: linux}",
            422,
            "Invalid",
            "spec.taskRunTemplate.podTemplate.nodeSelector",
        ),
        ("namespace: ci", 422, "NotFound", 'namespaces "ci" not found'),
        (
            "params: [{name: x, value: $(body.subject.content.change.id)}]",
            400,
            "MissingPath",
            "$(body.subject.content.change.id): body.subject.content has no key 'change'",
        ),
    ],
)
async def test_what_cannot_work_is_answered_4xx_naming_the_cause(
    kube: FakeKube,
    tmp_path: Path,
    environment: pytest.MonkeyPatch,
    extra: str,
    status: int,
    reason: str,
    fragment: str,
) -> None:
    bindings = tmp_path / "bindings.yaml"
    bindings.write_text(
        f"bindings:\n  - name: b\n    type: {MERGED}\n    pipeline: build-and-test\n    {extra}\n"
    )
    env = {**live(kube, tmp_path), "TEKTON_TRIGGER_BINDINGS": str(bindings)}
    async with hosted(environment, **env) as url:
        answer = await post(url, *binary(change_merged()))
    assert answer[0] == status
    assert answer[1]["data"]["reason"] == reason
    assert fragment in answer[1]["data"]["message"]
    assert kube.objects("pipelineruns") == []


async def test_a_name_held_by_another_event_is_422(
    kube: FakeKube, tmp_path: Path, environment: pytest.MonkeyPatch
) -> None:
    pipelinerun = importlib.import_module("tekton_trigger_under_test.pipelinerun")
    name = pipelinerun.run_name(
        "build-and-test",
        "https://github.com/octo-org/hello-world",
        change_merged()["context"]["id"],
    )
    kube.add(
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "PipelineRun",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"pipelineRef": {"name": "by-hand"}},
        }
    )
    async with hosted(environment, **live(kube, tmp_path)) as url:
        status, reply = await post(url, *binary(change_merged()))
    assert status == 422
    assert reply["data"]["reason"] == "NameConflict"


async def test_dry_run_replies_with_a_pipelinerun_the_crd_accepts(
    kube: FakeKube, environment: pytest.MonkeyPatch, queued_schema: Any
) -> None:
    async with hosted(environment) as url:
        async with aiohttp.ClientSession() as session, session.get(url + "/health/readiness") as r:
            readiness = await r.text()
        headers, _ = binary(change_merged())
        structured = {
            "specversion": "1.0",
            "id": headers["ce-id"],
            "source": headers["ce-source"],
            "type": headers["ce-type"],
            "datacontenttype": "application/json",
            "data": change_merged(),
        }
        status, reply = await post(
            url, {"content-type": "application/cloudevents+json"}, json.dumps(structured).encode()
        )
    assert readiness == "ready (dry run)"
    assert status == 200
    queued_schema.validate(reply["data"])
    custom = reply["data"]["customData"]
    assert custom["dryRun"] is True
    crds.validate(custom["pipelineRun"])
    assert kube.requests == []


async def test_a_request_that_is_not_a_cloudevent_is_400(environment: pytest.MonkeyPatch) -> None:
    async with (
        hosted(environment) as url,
        aiohttp.ClientSession() as session,
        session.post(url, data=b"{}", headers={"content-type": "application/json"}) as r,
    ):
        assert r.status == 400
