"""The gateway's HTTP surface on the real app (in-process, memory broker and state): the guard
(who may do what, 401/403/429/503), the ingress (202/400/404/413/415, duplicates), webhooks
(signatures, what is published) and the admin API. Assertions are on what a client sees and
on the bytes the sink functions received."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.http.auth import hash_token
from gateway.http.guard import Rule, classify
from tests.builders import trigger_yaml, write
from tests.conftest import REPO
from tests.unit.inprocess import Gateway, binary, gateway, retrying, until

ORDER = "com.example.order"
STRUCTURED = {"content-type": "application/cloudevents+json"}


def structured(event_id: str, event_type: str = ORDER, **extra: object) -> bytes:
    event = {"specversion": "1.0", "id": event_id, "source": "/test", "type": event_type}
    return json.dumps({**event, **extra}).encode()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with gateway(
        tmp_path,
        trigger_yaml("orders", function="orders", type=ORDER, delivery=retrying(0)),
        trigger_yaml("broken", function="broken", type="com.example.broken", delivery=retrying(0)),
        sinks={"orders": 200, "broken": 500},
        max_body_bytes=1000,
    ) as running:
        yield running


def bodies(gw: Gateway, function: str) -> list[bytes]:
    return [body for _, body in gw.received(function)]


# -- guard: classify ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "rule"),
    [
        ("GET", "/healthz", Rule("open")),
        ("POST", "/webhooks/github", Rule("open")),
        ("POST", "/", Rule("publish", "default", "default")),
        ("POST", "/team/orders", Rule("publish", "team", "orders")),
        ("POST", "/team/orders/request", Rule("publish", "team", "orders")),
        ("POST", "/functions/greeter", Rule("function", name="greeter")),
        ("GET", "/admin/state", Rule("admin")),
        ("GET", "/events/stream", Rule("admin")),
        # a route that is not a publish is admin, never open: no prefix opens a door
        ("GET", "/team/orders", Rule("admin")),
        ("POST", "/webhooks/github/extra", Rule("admin")),
        ("GET", "/healthz/x", Rule("admin")),
        ("POST", "/healthz/x", Rule("publish", "healthz", "x")),  # a reserved namespace: 404
        ("POST", "/team/orders/request/x", Rule("admin")),
    ],
)
def test_classify_by_exact_route(method: str, path: str, rule: Rule) -> None:
    assert classify(method, path) == rule


# -- guard over HTTP ------------------------------------------------------------------------------


def tokens(directory: Path) -> Path:
    return write(
        directory / "tokens.yaml",
        "tokens:\n"
        f"  - {{name: team, sha256: {hash_token('tok-team')}, namespaces: [default]}}\n"
        f"  - {{name: other, sha256: {hash_token('tok-other')}, namespaces: [other]}}\n"
        f"  - {{name: ops, sha256: {hash_token('tok-admin')}, admin: true}}\n"
        f"  - {{name: slow, sha256: {hash_token('tok-slow')}, rate: 1, burst: 1}}\n",
    )


def bearer(token: str, event_id: str = "g1") -> dict[str, str]:
    return {**binary(event_id, ORDER), "authorization": f"Bearer {token}"}


async def test_guard_answers_401_403_and_lets_the_allowed_through(tmp_path: Path) -> None:
    async with gateway(
        tmp_path,
        trigger_yaml("orders", function="orders", type=ORDER),
        sinks={"orders": 200},
        tokens_file=tokens(tmp_path),
    ) as gw:
        missing = await gw.http.post("/default/default", headers=binary("g0", ORDER))
        anonymous_admin = await gw.http.get("/admin/state")
        wrong = await gw.http.post("/default/default", headers=bearer("nope"))
        forbidden = await gw.http.post("/default/default", headers=bearer("tok-other"))
        admin_only = await gw.http.get("/admin/state", headers=bearer("tok-team"))
        ok = await gw.http.post("/default/default", headers=bearer("tok-team", "g-ok"))
        admin = await gw.http.get("/admin/state", headers=bearer("tok-admin"))
        health = await gw.http.get("/healthz")
        await until(lambda: len(gw.received("orders")) == 1)
        delivered = gw.received("orders")
    for r in (missing, wrong, anonymous_admin):
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == 'Bearer realm="cemesh"'
        assert r.json()["field"] == "authorization"
    assert forbidden.status_code == 403
    assert "default/default" in forbidden.json()["detail"]
    assert admin_only.status_code == 403
    assert (ok.status_code, admin.status_code, health.status_code) == (202, 200, 200)
    assert [headers["ce-id"] for headers, _ in delivered] == ["g-ok"]


async def test_guard_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    async with gateway(tmp_path, tokens_file=tokens(tmp_path)) as gw:
        first = await gw.http.post("/", headers=bearer("tok-slow", "r1"))
        second = await gw.http.post("/", headers=bearer("tok-slow", "r2"))
    assert first.status_code == 202
    assert second.status_code == 429
    assert second.headers["content-type"] == "application/problem+json"
    assert int(second.headers["retry-after"]) >= 1


async def test_guard_concurrency_bound_is_503_and_health_stays_open(tmp_path: Path) -> None:
    async with gateway(tmp_path, max_concurrency=1) as gw:
        # a request-reply nobody answers holds the one slot until its timeout
        waiting = asyncio.create_task(
            gw.http.post("/default/default/request?timeout=1", headers=binary("c1", "nobody"))
        )
        await asyncio.sleep(0.2)
        busy = await gw.http.post("/", headers=binary("c2", ORDER))
        health = await gw.http.get("/healthz")
        assert (await waiting).status_code == 504
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["status"] == 503
    assert health.status_code == 200


# -- ingress --------------------------------------------------------------------------------------


async def test_ingress_accepts_and_delivers_the_bytes(gw: Gateway) -> None:
    r = await gw.http.post(
        "/default/default",
        headers={**binary("i1", ORDER), "content-type": "application/json"},
        content=b'{"n": 1}',
    )
    assert r.status_code == 202
    assert r.content == b""
    await until(lambda: len(gw.received("orders")) == 1)
    ((headers, body),) = gw.received("orders")
    assert body == b'{"n": 1}'
    assert (headers["ce-id"], headers["ce-type"], headers["ce-source"]) == ("i1", ORDER, "/test")
    assert headers["content-type"] == "application/json"


async def test_ingress_structured_and_batch_reach_the_sink(gw: Gateway) -> None:
    one = await gw.http.post("/", headers=STRUCTURED, content=structured("s1", data={"a": 1}))
    batch = [json.loads(structured(f"b{i}")) for i in range(2)]
    many = await gw.http.post(
        "/default/default",
        headers={"content-type": "application/cloudevents-batch+json"},
        content=json.dumps(batch).encode(),
    )
    assert (one.status_code, many.status_code) == (202, 202)
    await until(lambda: len(gw.received("orders")) == 3)
    ids = sorted(headers["ce-id"] for headers, _ in gw.received("orders"))
    assert ids == ["b0", "b1", "s1"]
    (first,) = [body for headers, body in gw.received("orders") if headers["ce-id"] == "s1"]
    assert json.loads(first) == {"a": 1}


@pytest.mark.parametrize(
    ("headers", "content", "field"),
    [
        ({"ce-specversion": "1.0", "ce-source": "/t", "ce-type": ORDER}, b"", "id"),
        (STRUCTURED, b"{not json", "body"),
        (STRUCTURED, structured("ttl", knativebrokerttl=0), "knativebrokerttl"),
    ],
)
async def test_ingress_400_names_what_is_wrong(
    gw: Gateway, headers: dict[str, str], content: bytes, field: str
) -> None:
    r = await gw.http.post("/default/default", headers=headers, content=content)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field
    assert r.json()["instance"] == "/default/default"
    await asyncio.sleep(0.05)
    assert bodies(gw, "orders") == []


async def test_ingress_404_413_415(gw: Gateway) -> None:
    unknown = await gw.http.post("/default/nope", headers=binary("u", ORDER))
    reserved = await gw.http.post("/healthz/x", headers=binary("h", ORDER))
    big = await gw.http.post("/", headers=binary("big", ORDER), content=b"x" * 1001)
    unreadable = await gw.http.post(
        "/", headers={"content-type": "application/cloudevents+xml"}, content=b"<e/>"
    )
    assert unknown.status_code == 404
    assert "default/nope" in unknown.json()["detail"]
    assert reserved.status_code == 404
    assert big.status_code == 413
    assert big.json()["field"] == "body"
    assert unreadable.status_code == 415
    for r in (unknown, big, unreadable):
        assert r.headers["content-type"] == "application/problem+json"
    await asyncio.sleep(0.05)
    assert bodies(gw, "orders") == []


async def test_ingress_duplicate_headers_and_one_delivery(gw: Gateway) -> None:
    first = await gw.http.post("/", headers=binary("dup-1", ORDER), content=b"1")
    again = await gw.http.post("/", headers=binary("dup-1", ORDER), content=b"1")
    batch = [json.loads(structured("dup-1")), json.loads(structured("new-1"))]
    partial = await gw.http.post(
        "/",
        headers={"content-type": "application/cloudevents-batch+json"},
        content=json.dumps(batch).encode(),
    )
    assert first.status_code == 202
    assert "cemesh-duplicate" not in first.headers
    assert again.status_code == 202
    assert again.headers["cemesh-duplicate"] == "true"
    assert again.headers["cemesh-duplicate-count"] == "1"
    assert again.headers["cemesh-duplicate-ids"] == "dup-1"
    assert partial.headers["cemesh-duplicate"] == "partial"
    assert partial.headers["cemesh-duplicate-ids"] == "dup-1"
    await until(lambda: len(gw.received("orders")) == 2)
    await asyncio.sleep(0.05)
    assert sorted(h["ce-id"] for h, _ in gw.received("orders")) == ["dup-1", "new-1"]


# -- webhooks -------------------------------------------------------------------------------------

SECRET = "s3cret"
PUSH = (REPO / "tests" / "fixtures" / "webhooks" / "github" / "push.commits.json").read_bytes()


def github(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-github-event": "push",
        "x-github-delivery": "gh-1",
        "x-hub-signature-256": f"sha256={digest}",
        "content-type": "application/json",
    }


@pytest.fixture
async def hooks(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with gateway(
        tmp_path,
        trigger_yaml("pushes", function="pushes", type="com.github.push"),
        sinks={"pushes": 200},
        github_secret=SECRET,
        gitlab_token="gl-token",
        tekton_token="tk-token",
    ) as running:
        yield running


@pytest.mark.parametrize(
    "signature", [None, "sha256=" + "0" * 64, "sha1=" + "0" * 40, "other-secret"]
)
async def test_webhook_bad_signature_is_401_and_delivers_nothing(
    hooks: Gateway, signature: str | None
) -> None:
    headers = github(PUSH)
    if signature is None:
        del headers["x-hub-signature-256"]
    elif signature == "other-secret":
        headers = github(PUSH, "other")
    else:
        headers["x-hub-signature-256"] = signature
    r = await hooks.http.post("/webhooks/github", headers=headers, content=PUSH)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "x-hub-signature-256"
    await asyncio.sleep(0.05)
    assert bodies(hooks, "pushes") == []


async def test_webhook_202_names_what_was_published_and_the_sink_gets_the_payload(
    hooks: Gateway,
) -> None:
    r = await hooks.http.post("/webhooks/github", headers=github(PUSH), content=PUSH)
    assert r.status_code == 202
    assert r.json()["broker"] == "default/default"
    assert [(p["id"], p["type"]) for p in r.json()["published"]] == [("gh-1", "com.github.push")]
    await until(lambda: len(hooks.received("pushes")) == 1)
    ((headers, body),) = hooks.received("pushes")
    assert json.loads(body) == json.loads(PUSH)
    assert headers["ce-id"] == "gh-1"


async def test_webhook_tokens_gitlab_and_tekton(hooks: Gateway) -> None:
    gitlab = {"x-gitlab-event": "Push Hook", "content-type": "application/json"}
    missing = await hooks.http.post("/webhooks/gitlab", headers=gitlab, content=b"{}")
    wrong = await hooks.http.post(
        "/webhooks/gitlab", headers={**gitlab, "x-gitlab-token": "nope"}, content=b"{}"
    )
    tekton = await hooks.http.post(
        "/webhooks/tekton", headers=binary("tk", "dev.tekton.event.x"), content=b"{}"
    )
    for r in (missing, wrong):
        assert r.status_code == 401
        assert r.json()["field"] == "x-gitlab-token"
    assert tekton.status_code == 401


async def test_webhook_without_a_secret_is_403(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        r = await gw.http.post("/webhooks/github", headers=github(PUSH), content=PUSH)
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"


# -- admin API ------------------------------------------------------------------------------------


async def test_admin_state_and_event_log(gw: Gateway) -> None:
    for i in range(3):
        r = await gw.http.post("/", headers=binary(f"log-{i}", ORDER), content=b"x")
        assert r.status_code == 202
    state = await gw.http.get("/admin/state")
    page = await gw.http.get("/admin/brokers/default/default/events", params={"limit": 2})
    unknown = await gw.http.get("/admin/brokers/default/nope/events")
    bad_after = await gw.http.get(
        "/admin/brokers/default/default/events", params={"after": "not-an-id"}
    )
    assert state.status_code == 200
    assert state.json()["backend"] == "memory"
    assert [b["broker"] for b in state.json()["brokers"]] == ["default/default"]
    assert page.status_code == 200
    assert [e["event"]["id"] for e in page.json()["events"]] == ["log-1", "log-2"]
    rest = await gw.http.get(
        "/admin/brokers/default/default/events", params={"after": page.json()["last"]}
    )
    assert rest.json()["events"] == []
    assert unknown.status_code == 404
    assert bad_after.status_code == 400
    assert bad_after.json()["field"] == "after"


async def test_admin_replay_delivers_again_to_one_trigger(gw: Gateway) -> None:
    r = await gw.http.post("/", headers=binary("rp-1", ORDER), content=b"payload")
    assert r.status_code == 202
    await until(lambda: len(gw.received("orders")) == 1)
    both = await gw.http.post(
        "/admin/brokers/default/default/replay",
        json={"since": "2000-01-01T00:00:00Z", "from": "1-0"},
    )
    elsewhere = await gw.http.post(
        "/admin/brokers/default/default/replay", json={"trigger": "default/nope"}
    )
    dry = await gw.http.post(
        "/admin/brokers/default/default/replay", json={"trigger": "orders", "dry_run": True}
    )
    replay = await gw.http.post("/admin/brokers/default/default/replay", json={"trigger": "orders"})
    assert both.status_code == 400
    assert both.json()["field"] == "from"
    assert elsewhere.status_code == 404
    assert elsewhere.json()["field"] == "trigger"
    assert (dry.json()["matched"], dry.json()["published"]) == (1, 0)
    assert replay.status_code == 200
    assert (replay.json()["matched"], replay.json()["published"]) == (1, 1)
    await until(lambda: len(gw.received("orders")) == 2)
    assert bodies(gw, "orders") == [b"payload", b"payload"]
    assert bodies(gw, "broken") == []  # the replay went to `orders` only


async def test_admin_dead_letters_list_show_replay_purge(gw: Gateway) -> None:
    for i in range(2):
        r = await gw.http.post("/", headers=binary(f"dl-{i}", "com.example.broken"), content=b"d")
        assert r.status_code == 202
    await until(lambda: gw.mesh.dispatcher.stats.dead_lettered == 2)
    base = "/admin/triggers/default/broken/dlq"
    listed = await gw.http.get(base)
    assert listed.status_code == 200
    letters = listed.json()["dead_letters"]
    assert listed.json()["count"] == 2
    assert sorted(d["event"]["id"] for d in letters) == ["dl-0", "dl-1"]
    assert letters[0]["error"]["code"] == "500"
    first = letters[0]["id"]
    shown = await gw.http.get(f"{base}/{first}")
    assert shown.json()["id"] == first
    missing = await gw.http.get(f"{base}/nope")
    assert missing.status_code == 404
    assert missing.json()["field"] == "id"
    replayed = await gw.http.post(f"{base}/replay", json={"ids": [first, "gone"]})
    assert replayed.json()["replayed"] == [first]
    assert replayed.json()["missing"] == ["gone"]
    await until(lambda: len(gw.received("broken")) == 3)
    await until(lambda: gw.mesh.dispatcher.stats.dead_lettered == 3)
    purged = await gw.http.delete(base)
    assert purged.json()["purged"] == 2
    assert (await gw.http.get(base)).json()["count"] == 0
    unknown = await gw.http.get("/admin/triggers/default/nope/dlq")
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "trigger"
