"""The walking skeleton end to end: `cemesh up` in a subprocess, events in over HTTP, a sink
run by the test asserting what arrives (issue 2)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.builders import binary, broker_yaml, documents, trigger_yaml
from tests.conftest import REPO
from tests.e2e.harness import (
    MeshProcess,
    Received,
    Responder,
    Sink,
    cemesh,
    mesh_config,
    post,
    write,
)

pytestmark = pytest.mark.e2e

PIPELINE = """\
apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: cluster-only}
spec: {tasks: []}
"""


def mesh_yaml(sink: str) -> str:
    return documents(
        broker_yaml(),
        trigger_yaml("all-orders", f"{sink}/orders", type="com.example.order"),
        trigger_yaml(
            "greetings", f"{sink}/greetings", filters=[{"exact": {"type": "com.example.greeting"}}]
        ),
        trigger_yaml("loop", f"{sink}/loop", type="com.example.loop"),
        PIPELINE,
    )


def _loop_reply(item: Received) -> web.Response:
    if item.path != "/loop":
        return web.Response(status=200)
    hops = int(item.headers.get("ce-hops", "0")) + 1
    headers = binary(f"loop-{hops}", "com.example.loop", "/loop", **{"ce-hops": str(hops)})
    return web.Response(status=200, headers=headers, body=b"")


@pytest.fixture
def sink_responder() -> Responder:
    return _loop_reply


@pytest.fixture
def mesh(tmp_path: Path, sink: Sink) -> Iterator[MeshProcess]:
    with MeshProcess(mesh_config(tmp_path, mesh_yaml(sink.url)), REPO / "functions") as process:
        yield process


async def _post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    status, _, received = await post(url, headers, body)
    return status, received


BINARY = {"ce-specversion": "1.0", "ce-source": "/shop", "ce-type": "com.example.order"}


async def test_binary_event_arrives_exactly(mesh: MeshProcess, sink: Sink) -> None:
    headers = binary("b-1", "com.example.order", "/shop", **{"ce-subject": "order 42"})
    headers.update({"ce-tenant": "caf%C3%A9", "content-type": "application/octet-stream"})
    status, _ = await _post(mesh.url + "/default/default", headers, b"\x00\x01binary\xff")
    assert status == 202
    (got,) = await sink.wait_for(1, path="/orders")
    assert got.body == b"\x00\x01binary\xff"
    h = got.headers
    assert (h["ce-id"], h["ce-source"], h["ce-type"], h["ce-specversion"]) == (
        "b-1",
        "/shop",
        "com.example.order",
        "1.0",
    )
    assert h["ce-subject"] == "order%2042"  # percent-encoded on the wire, as the spec says
    assert h["ce-tenant"] == "caf%C3%A9"
    assert h["content-type"] == "application/octet-stream"
    assert h["ce-knativebrokerttl"] == "255"
    assert h["ce-knativearrivaltime"].endswith("Z")
    assert h["prefer"] == "reply"


async def test_structured_event_arrives_in_binary_mode(mesh: MeshProcess, sink: Sink) -> None:
    event = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/shop",
        "type": "com.example.order",
        "datacontenttype": "application/json",
        "time": "2026-11-22T10:00:00Z",
        "count": 7,
        "urgent": True,
        "data": {"item": "book", "qty": 2},
    }
    status, _ = await _post(
        mesh.url + "/", {"content-type": "application/cloudevents+json"}, json.dumps(event).encode()
    )
    assert status == 202
    (got,) = await sink.wait_for(1, path="/orders")
    assert json.loads(got.body) == {"item": "book", "qty": 2}
    assert got.body == b'{"item":"book","qty":2}'
    assert got.headers["content-type"] == "application/json"
    assert got.headers["ce-time"] == "2026-11-22T10:00:00Z"
    assert (got.headers["ce-count"], got.headers["ce-urgent"]) == ("7", "true")


async def test_batch_delivers_every_event(mesh: MeshProcess, sink: Sink) -> None:
    batch = [
        {
            "specversion": "1.0",
            "id": f"k-{i}",
            "source": "/shop",
            "type": "com.example.order",
            "data_base64": "AAE=",
        }
        for i in range(3)
    ]
    status, _ = await _post(
        mesh.url + "/default/default",
        {"content-type": "application/cloudevents-batch+json"},
        json.dumps(batch).encode(),
    )
    assert status == 202
    got = await sink.wait_for(3, path="/orders")
    assert sorted(r.headers["ce-id"] for r in got) == ["k-0", "k-1", "k-2"]
    assert all(r.body == b"\x00\x01" for r in got)


async def test_reply_chain_through_a_function(mesh: MeshProcess, sink: Sink) -> None:
    headers = binary("g-1", "com.example.greet.request", "/people")
    headers["content-type"] = "application/json"
    status, _ = await _post(mesh.url + "/", headers, b'{"name": "Ada"}')
    assert status == 202
    (got,) = await sink.wait_for(1, path="/greetings")
    assert json.loads(got.body) == {"message": "Hello, Ada!"}
    assert got.headers["ce-source"] == "/functions/greeter"
    assert got.headers["ce-subject"] == "g-1"
    assert got.headers["ce-knativebrokerttl"] == "254"


async def test_ttl_stops_a_reply_loop(mesh: MeshProcess, sink: Sink) -> None:
    headers = binary("loop-0", "com.example.loop", "/loop", **{"ce-knativebrokerttl": "5"})
    status, _ = await _post(mesh.url + "/", headers, b"")
    assert status == 202
    got = await sink.wait_for(5, path="/loop")
    await asyncio.sleep(0.5)
    assert len(sink.on("/loop")) == 5
    assert [r.headers["ce-knativebrokerttl"] for r in got] == ["5", "4", "3", "2", "1"]


async def test_ingress_errors_are_problem_details(mesh: MeshProcess, sink: Sink) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(mesh.url + "/default/nope", data=b"") as r:
            assert r.status == 404
            assert r.headers["content-type"] == "application/problem+json"
        bad = {**BINARY, "ce-id": "", "content-type": "text/plain"}
        async with session.post(mesh.url + "/", headers=bad, data=b"x") as r:
            assert r.status == 400
            assert (await r.json())["field"] == "id"
        async with session.post(
            mesh.url + "/", data=b"{}", headers={"content-type": "application/cloudevents+xml"}
        ) as r:
            assert r.status == 415
        async with session.post(
            mesh.url + "/",
            data=io.BytesIO(b"x" * (1024 * 1024 + 1)),
            headers={**BINARY, "ce-id": "big"},
        ) as r:
            assert r.status == 413
        spent = {**BINARY, "ce-id": "t", "ce-knativebrokerttl": "0"}
        async with session.post(mesh.url + "/", headers=spent, data=b"") as r:
            assert r.status == 400
            assert (await r.json())["field"] == "knativebrokerttl"
    assert sink.received == []


def test_startup_lists_what_was_loaded(tmp_path: Path) -> None:
    config = write(tmp_path / "c" / "m.yaml", mesh_yaml("http://127.0.0.1:9")).parent
    process = MeshProcess(config, REPO / "functions").start()
    output = process.stop()
    assert (
        "default/all-orders on default: type='com.example.order' -> http://127.0.0.1:9/orders"
        in output
    )
    assert "greeter (python, invoke cloudevent)" in output
    assert "Pipeline cluster-only (tekton.dev/v1)" in output


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\n"
            "spec: {broker: missing, subscriber: {uri: 'http://x'}}\n",
            "broker default/missing is not defined",
        ),
        (
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\n"
            "spec: {broker: default, subscriber: {ref: {kind: Service, name: ghost}}}\n",
            "'ghost'",
        ),
        (
            "apiVersion: eventing.knative.dev/v1beta2\nkind: EventType\nmetadata: {name: e}\n",
            "cannot be used",
        ),
        ("key: [unclosed\n", "invalid YAML"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path: Path, manifest: str, message: str) -> None:
    config = write(tmp_path / "c" / "bad.yaml", manifest).parent
    result = cemesh("up", "--config", str(config), "--functions", str(tmp_path / "none"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "bad.yaml" in result.stderr
    assert message in result.stderr
