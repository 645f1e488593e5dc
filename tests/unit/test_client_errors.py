"""Issue 12 item 9: client errors are not server errors. JSON nested thousands deep, a replay
from before 1970 and typed errors raised inside FastAPI routes are 4xx problem+json answers,
with at most one INFO/WARNING line and no traceback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.builders import trigger_yaml
from tests.unit.inprocess import Gateway, gateway

DEEP = b"[" * 5000 + b"]" * 5000


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with gateway(
        tmp_path,
        trigger_yaml("orders", function="orders", type="com.example.order"),
        sinks={"orders": 200},
        allow_unsigned_webhooks=True,
    ) as running:
        yield running


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_deep_json_is_a_400(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        direct = await gw.http.post("/functions/orders?type=com.example.order", content=DEEP)
        github = await gw.http.post(
            "/webhooks/github",
            content=DEEP,
            headers={"x-github-event": "push", "x-github-delivery": "d-1"},
        )
        gitlab = await gw.http.post(
            "/webhooks/gitlab", content=DEEP, headers={"x-gitlab-event": "Push Hook"}
        )
        structured = await gw.http.post(
            "/", content=DEEP, headers={"content-type": "application/cloudevents+json"}
        )
    for response in (direct, github, gitlab, structured):
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["field"] == "body"
    no_traceback(caplog)


async def test_a_replay_since_before_1970_starts_at_the_beginning(gw: Gateway) -> None:
    r = await gw.http.post(
        "/",
        headers={
            "ce-specversion": "1.0",
            "ce-id": "old-1",
            "ce-source": "/s",
            "ce-type": "com.example.order",
        },
    )
    assert r.status_code == 202
    replay = await gw.http.post(
        "/admin/brokers/default/default/replay",
        json={"since": "1900-01-01T00:00:00Z", "dry_run": True},
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["matched"] == 1


async def test_an_invalid_event_in_a_route_is_a_400_without_traceback(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        r = await gw.http.post("/webhooks/tekton", content=b"{}")
    assert r.status_code == 400
    assert r.json()["field"] == "specversion"
    no_traceback(caplog)
