"""Issue 12, items 1-3: no auth bypass through route names, replies stay in their tenant, and
a reply id that cannot be routed never fails a request after its event was published.

The real app runs in-process with its lifespan, driven through httpx's ASGI transport; the
RabbitMQ variant (marker `connected`) uses a unique topology prefix."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from brokers.errors import ConfigError
from brokers.triggers import RESERVED_NAMESPACES, load_config
from gateway.http.app import create_app
from gateway.http.auth import hash_token
from gateway.http.guard import classify
from gateway.settings import Settings
from tests.e2e.harness import Sink, write

AMQP_URL: Final = os.environ.get("CEMESH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
EVENT: Final = {"ce-specversion": "1.0", "ce-source": "/tenancy", "ce-type": "com.example.ask"}


def two_tenants(directory: Path, sink: str | None = None) -> Path:
    """Brokers `team-a/default` and `team-b/default`; with a sink, a trigger on each."""
    text = ""
    for namespace in ("team-a", "team-b"):
        text += (
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\n"
            f"metadata: {{name: default, namespace: {namespace}}}\n---\n"
        )
        if sink:
            text += (
                "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
                f"metadata: {{name: all, namespace: {namespace}}}\n"
                f"spec: {{broker: default, subscriber: {{uri: '{sink}/{namespace}'}}}}\n---\n"
            )
    write(directory / "config" / "mesh.yaml", text)
    write(
        directory / "tokens.yaml",
        "tokens:\n"
        f"  - {{name: a, sha256: {hash_token('tok-a')}, namespaces: [team-a]}}\n"
        f"  - {{name: b, sha256: {hash_token('tok-b')}, namespaces: [team-b]}}\n",
    )
    return directory


@asynccontextmanager
async def gateway(directory: Path, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        config=directory / "config",
        functions=directory / "no-functions",
        tokens_file=directory / "tokens.yaml",
        **overrides,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mesh") as http:
            yield http


def as_(token: str, **headers: str) -> dict[str, str]:
    return {**EVENT, "authorization": f"Bearer {token}", **headers}


# item 2: routes, not prefixes


@pytest.mark.parametrize("namespace", sorted(RESERVED_NAMESPACES))
def test_a_reserved_namespace_is_refused_at_load(tmp_path: Path, namespace: str) -> None:
    write(
        tmp_path / "b.yaml",
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\n"
        f"metadata: {{name: x, namespace: {namespace}}}\n",
    )
    with pytest.raises(ConfigError, match=f"namespace '{namespace}' is reserved") as caught:
        load_config(tmp_path)
    assert "b.yaml" in str(caught.value)
    assert "Broker x" in str(caught.value)


def test_a_reserved_default_namespace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--namespace"):
        load_config(tmp_path, default_namespace="webhooks")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/webhooks/github", "open"),
        ("/webhooks/tekton", "open"),
        ("/webhooks/x", "publish"),
        ("/static/x", "publish"),
        ("/webhooks/github/request", "publish"),
        ("/static/x/request", "publish"),
        ("/healthz", "open"),
    ],
)
def test_the_guard_classifies_by_route(path: str, kind: str) -> None:
    assert classify("POST", path).kind == kind


async def test_webhooks_and_static_paths_need_a_token(tmp_path: Path) -> None:
    async with gateway(two_tenants(tmp_path)) as http:
        for path in ("/webhooks/x", "/static/x", "/webhooks/x/request", "/static/default"):
            r = await http.post(path, headers={**EVENT, "ce-id": "w"}, content=b"{}")
            assert r.status_code == 401, path
        # the webhook routes themselves stay open (they check their own signatures)
        r = await http.post("/webhooks/github", content=b"{}")
        assert r.status_code == 403
        assert "CEMESH_GITHUB_SECRET" in r.json()["detail"]


# item 3: replies stay in their tenant


async def _pending_request(http: httpx.AsyncClient) -> tuple[asyncio.Task[httpx.Response], str]:
    request = asyncio.create_task(
        http.post(
            "/team-b/default/request?timeout=2",
            headers=as_("tok-b", **{"ce-id": "ask-b"}),
            content=b"{}",
        )
    )
    mesh = http._transport.app.state.mesh  # type: ignore[attr-defined]
    for _ in range(100):
        if mesh.replies._waiting:
            break
        await asyncio.sleep(0.02)
    (correlation,) = list(mesh.replies._waiting)
    return request, str(correlation)


async def test_a_reply_from_another_tenant_is_ignored(tmp_path: Path) -> None:
    async with gateway(two_tenants(tmp_path)) as http:
        request, correlation = await _pending_request(http)
        forged = as_("tok-a", **{"ce-id": "forged", "ce-replyid": correlation})
        assert (
            await http.post("/team-a/default", headers=forged, content=b"{}")
        ).status_code == 202
        r = await request
        assert r.status_code == 504
        mesh = http._transport.app.state.mesh  # type: ignore[attr-defined]
        assert mesh.replies.foreign == 1


async def test_a_reply_from_the_same_tenant_answers(tmp_path: Path) -> None:
    async with gateway(two_tenants(tmp_path)) as http:
        request, correlation = await _pending_request(http)
        forged = as_("tok-a", **{"ce-id": "forged", "ce-replyid": correlation})
        await http.post("/team-a/default", headers=forged, content=b"{}")
        answer = as_("tok-b", **{"ce-id": "answer", "ce-replyid": correlation})
        assert (
            await http.post("/team-b/default", headers=answer, content=b"{}")
        ).status_code == 202
        r = await request
    assert r.status_code == 200
    assert r.headers["ce-id"] == "answer"
    assert "ce-cemeshreplyorigin" not in r.headers


async def test_correlation_ids_carry_128_random_bits(tmp_path: Path) -> None:
    async with gateway(two_tenants(tmp_path), replica="r1") as http:
        mesh = http._transport.app.state.mesh  # type: ignore[attr-defined]
        ids = {mesh.replies.new_correlation_id() for _ in range(1000)}
    assert len(ids) == 1000
    for correlation in ids:
        replica, token = correlation.split(":")
        assert replica == "r1"
        assert len(token) == 32
        int(token, 16)


# item 1: a reply id that cannot be routed is not an error after the publish


@pytest.mark.parametrize(
    "broker_url", ["memory://", pytest.param(AMQP_URL, marks=pytest.mark.connected)]
)
async def test_an_odd_replyid_is_accepted_and_delivered(tmp_path: Path, broker_url: str) -> None:
    sink = await Sink().start()
    try:
        prefix = f"t{uuid.uuid4().hex[:10]}"
        directory = two_tenants(tmp_path, sink.url)
        async with gateway(directory, broker_url=broker_url, broker_prefix=prefix) as http:
            for n, reply_id in enumerate(["x" * 300, "r" * 300 + ":" + "0" * 32, ":", "a:b"]):
                headers = as_("tok-a", **{"ce-id": f"odd-{n}", "ce-replyid": reply_id})
                r = await http.post("/team-a/default", headers=headers, content=b"{}")
                assert r.status_code == 202, r.text
            received = await sink.wait_for(4, path="/team-a")
        assert sorted(x.headers["ce-id"] for x in received) == [f"odd-{n}" for n in range(4)]
    finally:
        await sink.stop()
