"""The admin API in-process (the app with its lifespan, httpx over ASGI) on the memory state and
on the real Redis (`connected`): its answers, its errors (problem+json naming the field) and
its OpenAPI document. The CLI on top of it is exercised end to end in tests/e2e."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from brokers.state import MemoryState, State
from gateway.http.app import create_app
from gateway.settings import Settings
from tests.builders import broker_yaml, documents, trigger_yaml

REDIS_URL: Final = "redis://127.0.0.1:6379/0"
CONFIG: Final = documents(
    broker_yaml(),
    broker_yaml("other"),
    trigger_yaml("orders", "http://127.0.0.1:9/orders", type="com.example.order"),
    trigger_yaml("elsewhere", "http://127.0.0.1:9/elsewhere", broker="other"),
)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.connected)])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[State]:
    if request.param == "memory":
        yield MemoryState("test")
        return
    from redis.asyncio import Redis

    from brokers.state.redis import RedisState

    prefix = f"cemesh-test-{uuid.uuid4().hex[:12]}"
    yield RedisState(REDIS_URL, prefix)
    client = Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def http(tmp_path: Path, state: State) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mesh.yaml").write_text(CONFIG)
    settings = Settings.model_validate(
        {"config": tmp_path / "config", "functions": tmp_path / "none"}
    )
    app = create_app(settings, state=state)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mesh") as client:
            yield client


def ce(id_: str, type_: str = "com.example.order") -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": id_, "ce-source": "/admin-test", "ce-type": type_}


async def publish(http: httpx.AsyncClient, *ids: str, type_: str = "com.example.order") -> None:
    for id_ in ids:
        r = await http.post("/default/default", headers=ce(id_, type_), content=b"")
        assert r.status_code == 202


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    return body


async def test_events_newest_and_after(http: httpx.AsyncClient) -> None:
    await publish(http, "a", "b", "c")
    page = (await http.get("/admin/brokers/default/default/events", params={"limit": 2})).json()
    assert [e["event"]["id"] for e in page["events"]] == ["b", "c"]
    assert page["last"] == page["events"][-1]["id"]
    first = page["events"][0]["id"]
    after = await http.get("/admin/brokers/default/default/events", params={"after": first})
    assert [e["event"]["id"] for e in after.json()["events"]] == ["c"]
    empty = await http.get("/admin/brokers/default/default/events", params={"after": page["last"]})
    assert empty.json() == {"broker": "default/default", "events": [], "last": page["last"]}


async def test_events_long_poll_returns_when_one_arrives(http: httpx.AsyncClient) -> None:
    await publish(http, "a")
    last = (await http.get("/admin/brokers/default/default/events")).json()["last"]

    async def later() -> None:
        await asyncio.sleep(0.3)
        await publish(http, "b")

    task = asyncio.create_task(later())
    r = await http.get("/admin/brokers/default/default/events", params={"after": last, "wait": 10})
    await task
    assert [e["event"]["id"] for e in r.json()["events"]] == ["b"]


async def test_replay_counts_filters_and_limits(http: httpx.AsyncClient) -> None:
    await publish(http, "o1", "o2", "o3")
    await publish(http, "n1", type_="com.example.note")
    url = "/admin/brokers/default/default/replay"
    assert (await http.post(url, json={"dry_run": True})).json()["matched"] == 4
    typed = (await http.post(url, json={"dry_run": True, "type": "com.example.note"})).json()
    assert (typed["matched"], typed["published"], typed["replay_id"]) == (1, 0, None)
    targeted = (await http.post(url, json={"trigger": "orders", "limit": 2})).json()
    assert (targeted["matched"], targeted["published"]) == (2, 2)
    assert targeted["trigger"] == "default/orders"
    assert targeted["replay_id"].startswith("r-")
    until = (await http.post(url, json={"dry_run": True, "until": "2000-01-01T00:00:00Z"})).json()
    assert until["matched"] == 0
    from_second = (await http.post(url, json={"dry_run": True, "from": targeted["last"]})).json()
    assert from_second["matched"] == 3
    # replays are not logged again
    assert len((await http.get("/admin/brokers/default/default/events")).json()["events"]) == 4


async def test_errors_are_problem_details(http: httpx.AsyncClient) -> None:
    events = "/admin/brokers/default/default/events"
    assert problem(await http.get(events, params={"after": "-"}), 400)["field"] == "after"
    assert problem(await http.get("/admin/brokers/default/nope/events"), 404)["title"] == (
        "Unknown Broker"
    )
    replay = "/admin/brokers/default/default/replay"
    both = {"since": "2026-01-01T00:00:00Z", "from": "1-0"}
    assert problem(await http.post(replay, json=both), 400)["field"] == "from"
    assert problem(await http.post(replay, json={"from": "yesterday"}), 400)["field"] == "from"
    wrong = problem(await http.post(replay, json={"trigger": "elsewhere"}), 400)
    assert wrong["detail"] == "trigger default/elsewhere is not on broker default/default"
    assert problem(await http.post(replay, json={"trigger": "ghost"}), 404)["field"] == "trigger"
    assert problem(await http.post(replay, json={"limit": 0}), 400)["field"] == "limit"
    dlq = "/admin/triggers/default/ghost/dlq"
    assert problem(await http.get(dlq), 404)["detail"] == "trigger default/ghost does not exist"
    missing = problem(await http.get("/admin/triggers/default/orders/dlq/42"), 404)
    assert missing["field"] == "id"


async def test_duplicates_show_in_headers_and_counters(http: httpx.AsyncClient) -> None:
    first = await http.post("/default/default", headers=ce("d"), content=b"")
    second = await http.post("/default/default", headers=ce("d"), content=b"")
    assert "cemesh-duplicate" not in first.headers
    assert second.headers["cemesh-duplicate"] == "true"
    status = (await http.get("/admin/state")).json()
    assert status["counters"]["duplicates"] == 1
    assert status["healthy"] is True
    assert {"broker": "default/other", "dedup_window": 600.0, "log_length": 10000} in (
        status["brokers"]
    )


async def test_admin_api_is_in_the_openapi(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/admin/state",
        "/admin/brokers/{namespace}/{name}/events",
        "/admin/brokers/{namespace}/{name}/replay",
        "/admin/triggers/{namespace}/{name}/dlq",
        "/admin/triggers/{namespace}/{name}/dlq/{id}",
        "/admin/triggers/{namespace}/{name}/dlq/replay",
    ):
        assert path in paths
    replay = paths["/admin/brokers/{namespace}/{name}/replay"]["post"]
    assert "application/problem+json" in replay["responses"]["404"]["content"]
    assert "delete" in paths["/admin/triggers/{namespace}/{name}/dlq"]
