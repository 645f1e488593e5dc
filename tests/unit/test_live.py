"""The live view: frames for accepted events, matched triggers and outcomes; slow clients drop
instead of blocking; streams end on disconnect and on shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from brokers.event import Event
from brokers.transport import Outcome
from gateway.observability.live import Client, EventStream, LiveHub, _next_chunk, ui_page
from tests.unit.inprocess import Gateway, binary, gateway, route, until


def frames(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse SSE frames (`event:` + one `data:` line each); comments are skipped."""
    parsed = []
    for block in data.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if line and line[0] != ":")
        if "event" in lines:
            parsed.append((lines["event"], json.loads(lines["data"])))
    return parsed


def drain(client: Client) -> list[tuple[str, dict[str, Any]]]:
    chunks = []
    while not client.queue.empty():
        item = client.queue.get_nowait()
        assert item is not None
        chunks.append(item.render())
    return frames(b"".join(chunks))


def order(event_id: str, **extra: str | int) -> Event:
    attributes = {"specversion": "1.0", "id": event_id, "source": "/shop", "type": "order"}
    return Event.create({**attributes, **extra}, b'{"secret": 1}')


@pytest.fixture
async def observed(tmp_path: Path) -> AsyncIterator[Gateway]:
    orders, audit = route("orders", "com.example.order"), route("audit", "com.example.order")
    other = route("other", "com.example.other", function="orders")
    sinks = {"orders": 200, "audit": 500}
    async with gateway(tmp_path, orders, audit, other, sinks=sinks) as gw:
        yield gw


async def _one_order(observed: Gateway) -> list[tuple[str, dict[str, Any]]]:
    """The frames a watcher of default/default sees for one order (two triggers match)."""
    hub = observed.observability.live
    client = hub.subscribe("default/default")
    r = await observed.http.post("/default/default", headers=binary("o1", "com.example.order"))
    assert r.status_code == 202
    await until(lambda: observed.mesh.dispatcher.stats.delivered == 1)
    await until(lambda: observed.mesh.dispatcher.stats.dead_lettered == 1)
    got = drain(client)
    hub.unsubscribe(client)
    return got


async def test_accepted_events_show_matched_triggers_and_outcomes(observed: Gateway) -> None:
    got = await _one_order(observed)
    assert sorted(kind for kind, _ in got) == ["accepted", "delivery", "delivery"]
    (accepted,) = [d for kind, d in got if kind == "accepted"]
    assert (accepted["id"], accepted["type"]) == ("o1", "com.example.order")
    assert sorted(accepted["triggers"]) == ["default/audit", "default/orders"]
    assert accepted["attributes"]["knativebrokerttl"] == 255
    assert "data" not in accepted  # payloads stay out unless configured
    outcomes = {d["trigger"]: d for kind, d in got if kind == "delivery"}
    assert outcomes["default/orders"]["ok"] is True
    assert outcomes["default/orders"]["code"] == "200"
    assert outcomes["default/audit"]["ok"] is False
    assert outcomes["default/audit"]["code"] == "500"
    assert outcomes["default/audit"]["retries"] == 0
    assert [body for _, body in observed.received("orders")] == [b""]


async def test_the_accepted_frame_comes_before_the_outcomes(observed: Gateway) -> None:
    got = await _one_order(observed)
    assert [kind for kind, _ in got] == ["accepted", "delivery", "delivery"]


async def test_clients_see_only_their_broker(observed: Gateway) -> None:
    hub = observed.observability.live
    mine, everything = hub.subscribe("default/default"), hub.subscribe(None)
    hub.on_accepted("other/broker", [order("x")])
    assert drain(mine) == []
    assert [kind for kind, _ in drain(everything)] == ["accepted"]


def test_no_clients_costs_nothing() -> None:
    hub = LiveHub()
    hub.on_accepted("default/default", [order("x")])  # no config, no clients: must not fail
    assert hub.clients == set()


async def test_a_slow_client_drops_frames_and_is_told() -> None:
    hub = LiveHub(queue_size=2)
    client = hub.subscribe(None)
    hub.on_accepted("default/default", [order(f"e{i}") for i in range(5)])
    assert (client.dropped, hub.dropped) == (3, 3)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    chunk = await _next_chunk(client, never)
    assert chunk is not None
    got = frames(chunk)
    assert got[0] == ("dropped", {"count": 3})
    assert [d["id"] for kind, d in got[1:]] == ["e0", "e1"]


async def test_payload_preview_when_configured() -> None:
    hub = LiveHub(payload_limit=4)
    client = hub.subscribe(None)
    hub.on_accepted("default/default", [order("p")])
    ((_, accepted),) = drain(client)
    assert accepted["data"] == '{"se…'


REPLY = Event.create({"specversion": "1.0", "id": "r1", "source": "/f", "type": "com.x"})


async def test_replies_and_ttl_drops_appear(observed: Gateway) -> None:
    hub = LiveHub()  # a dispatcher without reply hooks: the hub derives the reply itself
    hub.attach(observed.mesh.config)
    client = hub.subscribe(None)
    (orders,) = [t for t in observed.mesh.config.triggers if t.name == "orders"]
    hub.on_delivery(orders, order("q", knativebrokerttl=5), Outcome(True, 200, reply=REPLY))
    hub.on_delivery(orders, order("z", knativebrokerttl=1), Outcome(True, 200, reply=REPLY))
    got = drain(client)
    assert [kind for kind, _ in got] == ["delivery", "accepted", "delivery", "accepted"]
    assert got[0][1]["reply"] == {"id": "r1", "type": "com.x"}
    assert got[1][1]["reply_to"] == "q"
    assert got[1][1]["attributes"]["knativebrokerttl"] == 4
    assert got[3][1]["dropped"] == "knativebrokerttl exhausted"


async def test_replies_shown_as_the_dispatcher_publishes_them(observed: Gateway) -> None:
    hub = LiveHub(sees_replies=True)
    hub.attach(observed.mesh.config)
    client = hub.subscribe(None)
    (orders,) = [t for t in observed.mesh.config.triggers if t.name == "orders"]
    request = order("q", knativebrokerttl=5)
    hub.on_delivery(orders, request, Outcome(True, 200, reply=REPLY))
    published = REPLY.replace(knativebrokerttl=4, traceparent=f"00-{'1' * 32}-{'2' * 16}-01")
    hub.on_reply("default/default", request, published)
    got = drain(client)
    assert [kind for kind, _ in got] == ["delivery", "accepted"]
    assert got[1][1]["reply_to"] == "q"
    assert got[1][1]["traceparent"] == published.text("traceparent")


class _Peer:
    """One SSE client over raw ASGI: what the server sent, and a disconnect button."""

    def __init__(self) -> None:
        self.messages: list[MutableMapping[str, Any]] = []
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.messages.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def test_stream_over_asgi_ends_on_disconnect_and_on_close(observed: Gateway) -> None:
    hub = observed.observability.live
    registry = observed.observability.metrics.registry

    def clients() -> float | None:
        return registry.get_sample_value("cemesh_live_clients")

    peer = _Peer()
    task = asyncio.create_task(EventStream(hub, None)({"type": "http"}, peer.receive, peer.send))
    await until(lambda: len(peer.messages) >= 2)
    start = peer.messages[0]
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert b"content-length" not in headers
    assert frames(peer.body)[0][0] == "hello"
    assert clients() == 1
    hub.on_accepted("default/default", [order("s1")])
    await until(lambda: any(k == "accepted" for k, _ in frames(peer.body)))
    peer.gone.set()
    await asyncio.wait_for(task, 2)
    assert hub.clients == set()
    assert clients() == 0

    other = _Peer()
    task = asyncio.create_task(EventStream(hub, None)({"type": "http"}, other.receive, other.send))
    await until(lambda: len(hub.clients) == 1)
    hub.close()
    await asyncio.wait_for(task, 2)
    assert other.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_stream_endpoint_rejects_an_unknown_broker(observed: Gateway) -> None:
    r = await observed.http.get("/events/stream", params={"broker": "default/nope"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "broker"


async def test_ui_page_is_served_and_safe(observed: Gateway) -> None:
    r = await observed.http.get("/ui")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.content == ui_page()
    assert b"new EventSource(" in r.content
    assert b"innerHTML" not in r.content  # event content is user input: textContent only


async def test_endpoints_are_in_the_openapi(observed: Gateway) -> None:
    r = await observed.http.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "text/event-stream" in paths["/events/stream"]["get"]["responses"]["200"]["content"]
    assert {"/metrics", "/ui"} <= set(paths)
