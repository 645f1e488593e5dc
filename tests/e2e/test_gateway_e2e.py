"""The gateway for real traffic (issue 9, items 1-4): request-reply, direct calls, tokens and
tenancy, limits. The app runs in-process with its lifespan; functions are the repo's own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.http.app import create_app
from gateway.http.auth import hash_token
from gateway.settings import Settings
from tests.conftest import REPO
from tests.e2e.harness import cemesh

GREET = {
    "ce-specversion": "1.0",
    "ce-source": "/test",
    "ce-type": "com.example.greet.request",
    "content-type": "application/json",
}


@asynccontextmanager
async def client(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(config=REPO / "config", functions=REPO / "functions", **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mesh") as http:
            yield http


async def test_request_reply_through_a_function() -> None:
    async with client() as http:
        r = await http.post(
            "/default/default/request",
            headers={**GREET, "ce-id": "rr-1"},
            content=b'{"name": "Lin"}',
        )
    assert r.status_code == 200
    assert r.headers["ce-type"] == "com.example.greeting"
    assert json.loads(r.content) == {"message": "Hello, Lin!"}
    assert r.headers["ce-subject"] == "rr-1"
    assert ":" in r.headers["ce-replyid"]


async def test_request_reply_times_out_with_504() -> None:
    async with client() as http:
        headers = {**GREET, "ce-id": "rr-2", "ce-type": "com.example.nobody.listens"}
        r = await http.post("/default/default/request?timeout=0.2", headers=headers, content=b"{}")
    assert r.status_code == 504
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "timeout"


@pytest.mark.parametrize("value", ["0", "-1", "abc", "100000"])
async def test_request_reply_rejects_bad_timeouts(value: str) -> None:
    async with client() as http:
        r = await http.post(
            f"/default/default/request?timeout={value}",
            headers={**GREET, "ce-id": "x"},
            content=b"{}",
        )
    assert r.status_code == 400
    assert r.json()["field"] == "timeout"


async def test_a_reply_posted_by_anyone_answers_the_request() -> None:
    async with client() as http:
        headers = {**GREET, "ce-id": "rr-3", "ce-type": "com.example.ask"}
        pending = asyncio.create_task(
            http.post("/default/default/request?timeout=5", headers=headers, content=b"{}")
        )
        await asyncio.sleep(0.2)
        mesh = http._transport.app.state.mesh  # type: ignore[attr-defined]
        (correlation,) = list(mesh.replies._waiting)
        answer = {
            "ce-specversion": "1.0",
            "ce-id": "ans",
            "ce-source": "/elsewhere",
            "ce-type": "com.example.answer",
            "ce-replyid": correlation,
        }
        assert (await http.post("/", headers=answer)).status_code == 202
        r = await pending
    assert r.status_code == 200
    assert r.headers["ce-id"] == "ans"


async def test_direct_call_with_plain_json() -> None:
    async with client() as http:
        r = await http.post(
            "/functions/greeter?type=com.example.greet.request", json={"name": "Ida"}
        )
        assert r.status_code == 200
        # func-python answers in structured mode; the gateway passes the answer through.
        assert r.headers["content-type"].startswith("application/cloudevents+json")
        assert r.json()["data"] == {"message": "Hello, Ida!"}
        unknown = await http.post("/functions/nope?type=t", json={})
        assert unknown.status_code == 404
        assert unknown.json()["field"] == "name"
        untyped = await http.post("/functions/greeter", content=b"{}")
        assert untyped.status_code == 400
        assert untyped.json()["field"] == "type"
        bad_json = await http.post("/functions/greeter?type=t", content=b"{nope")
        assert bad_json.status_code == 400


async def test_direct_call_with_a_cloudevent() -> None:
    async with client() as http:
        r = await http.post(
            "/functions/greeter", headers={**GREET, "ce-id": "d-1"}, content=b'{"name": "Bo"}'
        )
    assert r.status_code == 200
    assert r.json()["type"] == "com.example.greeting"
    assert r.json()["data"] == {"message": "Hello, Bo!"}


def _tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "tokens:\n"
        f"  - {{name: team-a, sha256: {hash_token('tok-a')}, namespaces: [default]}}\n"
        f"  - {{name: team-b, sha256: {hash_token('tok-b')}, namespaces: [other]}}\n"
        f"  - {{name: slow, sha256: {hash_token('tok-s')}, namespaces: ['*'], rate: 1, burst: 2}}\n"
    )
    return path


def _bearer(token: str) -> dict[str, str]:
    return {**GREET, "ce-id": "auth", "authorization": f"Bearer {token}"}


async def test_tokens_scope_namespaces(tmp_path: Path) -> None:
    async with client(tokens_file=_tokens(tmp_path)) as http:
        assert (
            await http.post("/default/default", headers=_bearer("tok-a"), content=b"{}")
        ).status_code == 202
        forbidden = await http.post("/default/default", headers=_bearer("tok-b"), content=b"{}")
        assert forbidden.status_code == 403
        assert forbidden.headers["content-type"] == "application/problem+json"
        missing = await http.post("/default/default", headers=GREET, content=b"{}")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await http.post("/default/default", headers=_bearer("nope"), content=b"{}")
        assert wrong.status_code == 401
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        call = await http.post(
            "/functions/greeter?type=t", json={}, headers={"authorization": "Bearer tok-b"}
        )
        assert call.status_code == 403


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    async with client(tokens_file=_tokens(tmp_path)) as http:
        statuses = [
            (await http.post("/", headers=_bearer("tok-s"), content=b"{}")) for _ in range(3)
        ]
    assert [r.status_code for r in statuses] == [202, 202, 429]
    assert int(statuses[2].headers["retry-after"]) >= 1


async def test_concurrency_bound_answers_503() -> None:
    async with client(max_concurrency=1) as http:
        headers = {**GREET, "ce-id": "c-1", "ce-type": "com.example.nobody.listens"}
        slow = asyncio.create_task(
            http.post("/default/default/request?timeout=1", headers=headers, content=b"{}")
        )
        await asyncio.sleep(0.2)
        busy = await http.post("/", headers={**GREET, "ce-id": "c-2"}, content=b"{}")
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert (await slow).status_code == 504


async def test_size_limits_per_mode() -> None:
    async with client(max_body_bytes=1000, max_batch_bytes=5000) as http:
        big = b'{"pad": "' + b"x" * 1200 + b'"}'
        single = await http.post("/", headers={**GREET, "ce-id": "s"}, content=big)
        assert single.status_code == 413
        batch = [
            {"specversion": "1.0", "id": f"b{i}", "source": "/t", "type": "t", "data": "x" * 300}
            for i in range(4)
        ]
        r = await http.post(
            "/",
            headers={"content-type": "application/cloudevents-batch+json"},
            content=json.dumps(batch).encode(),
        )
        assert r.status_code == 202


@pytest.mark.parametrize(("args", "ok"), [(["--host", "0.0.0.0"], False)])
def test_non_loopback_without_tokens_is_refused(args: list[str], ok: bool) -> None:
    result = cemesh("up", *args, "--port", "0")
    assert result.returncode == 2
    assert "--allow-open" in result.stderr


def test_token_new_prints_a_hash_not_stored_token() -> None:
    result = cemesh("token", "new", "--name", "ci")
    assert result.returncode == 0
    token = result.stdout.split("token: ", 1)[1].split()[0]
    assert hash_token(token) in result.stdout
