"""CI webhooks through the gateway: signatures, secrets, translation, publishing (issue 6)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from gateway.http.app import create_app
from gateway.settings import Settings
from tests.conftest import REPO
from tests.e2e.harness import MeshProcess, Sink, write

FIXTURES = REPO / "tests" / "fixtures" / "webhooks"
SECRET = "s3cret"


def _fixture(kind: str, name: str) -> bytes:
    path = FIXTURES / kind / name
    if not path.exists():
        pytest.skip(f"fixture {path} not present")
    return path.read_bytes()


def _sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@asynccontextmanager
async def client(**overrides: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    # No config directory: the mesh has just the implicit default/default broker.
    settings = Settings(
        config=REPO / "tests" / "no-config", functions=REPO / "tests" / "no-functions", **overrides
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mesh") as http:
            yield http, app.state.mesh


def _github_headers(body: bytes, event: str = "pull_request", **extra: str) -> dict[str, str]:
    return {
        "x-github-event": event,
        "x-github-delivery": "d-42",
        "x-hub-signature-256": _sign(body),
        "content-type": "application/json",
        **extra,
    }


async def test_github_merged_pull_request_is_published_raw_and_as_cdevent() -> None:
    body = _fixture("github", "pull_request.closed.merged.json")
    async with client(github_secret=SECRET) as (http, _):
        r = await http.post("/webhooks/github", content=body, headers=_github_headers(body))
    assert r.status_code == 202
    published = r.json()["published"]
    assert [p["type"] for p in published] == [
        "com.github.pull_request.closed",
        "dev.cdevents.change.merged.0.3.0",
    ]
    assert published[0]["id"] == "d-42"


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "missing"),
        ("sha256=" + "0" * 64, "does not match"),
        ("sha1=" + "0" * 40, "sha256="),
        ("sha256=", "does not match"),
    ],
)
async def test_github_bad_signatures_are_401_and_publish_nothing(
    signature: str | None, reason: str
) -> None:
    body = _fixture("github", "pull_request.opened.json")
    headers = _github_headers(body)
    del headers["x-hub-signature-256"]
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    async with client(github_secret=SECRET) as (http, mesh):
        r = await http.post("/webhooks/github", content=body, headers=headers)
        events = await mesh.broker.dead_letters("default/none")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert reason in r.json()["detail"]
    assert events == []


async def test_signature_of_another_secret_is_rejected() -> None:
    body = _fixture("github", "pull_request.opened.json")
    headers = _github_headers(body, **{"x-hub-signature-256": _sign(body, "other")})
    async with client(github_secret=SECRET) as (http, _):
        assert (
            await http.post("/webhooks/github", content=body, headers=headers)
        ).status_code == 401


async def test_no_secret_configured_refuses_unless_allowed() -> None:
    body = _fixture("github", "pull_request.opened.json")
    async with client() as (http, _):
        r = await http.post("/webhooks/github", content=body, headers=_github_headers(body))
        assert r.status_code == 403
    async with client(allow_unsigned_webhooks=True) as (http, _):
        r = await http.post("/webhooks/github", content=body, headers=_github_headers(body))
        assert r.status_code == 202


async def test_unparseable_payload_is_400_with_reason() -> None:
    body = b"{not json"
    async with client(github_secret=SECRET) as (http, _):
        r = await http.post("/webhooks/github", content=body, headers=_github_headers(body))
    assert r.status_code == 400
    assert r.json()["field"] == "body"


async def test_unmapped_event_is_published_raw_only() -> None:
    body = _fixture("github", "push.commits.json")
    async with client(github_secret=SECRET) as (http, _):
        r = await http.post(
            "/webhooks/github", content=body, headers=_github_headers(body, event="push")
        )
    assert r.status_code == 202
    assert [p["type"] for p in r.json()["published"]] == ["com.github.push"]


async def test_gitlab_token() -> None:
    files = sorted((FIXTURES / "gitlab").glob("*merge*.json"))
    if not files:
        pytest.skip("no GitLab merge request fixture")
    body = files[0].read_bytes()
    headers = {"x-gitlab-event": "Merge Request Hook", "content-type": "application/json"}
    async with client(gitlab_token="tok") as (http, _):
        assert (
            await http.post("/webhooks/gitlab", content=body, headers=headers)
        ).status_code == 401
        wrong = {**headers, "x-gitlab-token": "nope"}
        assert (await http.post("/webhooks/gitlab", content=body, headers=wrong)).status_code == 401
        good = {**headers, "x-gitlab-token": "tok", "idempotency-key": "k-1"}
        r = await http.post("/webhooks/gitlab", content=body, headers=good)
    assert r.status_code == 202
    assert r.json()["published"][0]["type"].startswith("com.gitlab.")


TEKTON_STARTED = {
    "ce-specversion": "1.0",
    "ce-id": "tk-1",
    "ce-source": "/apis/tekton.dev/v1/namespaces/ci/pipelineruns/build-1",
    "ce-type": "dev.tekton.event.pipelinerun.started.v1",
    "ce-subject": "build-1",
    "content-type": "application/json",
}
TEKTON_RUN = {
    "pipelineRun": {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "build-1", "namespace": "ci", "uid": "u-1", "labels": {}},
        "spec": {"pipelineRef": {"name": "build"}},
        "status": {
            "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running"}],
            "startTime": "2026-11-22T10:00:00Z",
        },
    }
}


async def test_tekton_events_need_the_shared_token() -> None:
    body = json.dumps(TEKTON_RUN).encode()
    async with client(tekton_token="tk") as (http, _):
        assert (
            await http.post("/webhooks/tekton", content=body, headers=TEKTON_STARTED)
        ).status_code == 401
        r = await http.post("/webhooks/tekton?token=tk", content=body, headers=TEKTON_STARTED)
    assert r.status_code == 202
    types = [p["type"] for p in r.json()["published"]]
    assert types[0] == "dev.tekton.event.pipelinerun.started.v1"
    assert types[1].startswith("dev.cdevents.pipelinerun.started.")


CONFIG = """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: merged}}
spec:
  broker: default
  filters: [{{prefix: {{type: dev.cdevents.change.merged.}}}}]
  subscriber: {{uri: "{sink}/merged"}}
"""


@pytest.mark.e2e
async def test_merged_pull_request_reaches_a_trigger_through_cemesh_up(tmp_path: Path) -> None:
    body = _fixture("github", "pull_request.closed.merged.json")
    sink = await Sink().start()
    try:
        config = write(tmp_path / "c" / "t.yaml", CONFIG.format(sink=sink.url)).parent
        with MeshProcess(config, env={"CEMESH_GITHUB_SECRET": SECRET}) as mesh:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    mesh.url + "/webhooks/github", data=body, headers=_github_headers(body)
                ) as r,
            ):
                assert r.status == 202
            (got,) = await sink.wait_for(1, path="/merged")
    finally:
        await sink.stop()
    assert got.headers["ce-type"] == "dev.cdevents.change.merged.0.3.0"
    cdevent = json.loads(got.body)
    assert cdevent["context"]["type"] == "dev.cdevents.change.merged.0.3.0"
    assert got.headers["ce-subject"] == cdevent["subject"]["id"]
