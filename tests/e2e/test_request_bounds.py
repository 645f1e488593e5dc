"""Issue 12 item 4: one event cannot drop everyone's connection, and request heads are bounded.

Attributes are bounded at ingress (400/413 naming the attribute) below RabbitMQ's frame size,
so an oversized extension never reaches the connection every tenant shares; request heads are
bounded in bytes, in header count and in time while they are read (431, 408)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Final

import aiohttp
import pytest

from brokers.event import Event
from gateway.http.ingress import AttributeLimits, check_attributes
from gateway.http.problems import HTTPProblem
from tests.builders import broker_yaml
from tests.e2e.harness import MeshProcess, Sink, write

AMQP_URL: Final = os.environ.get("CEMESH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def event(**extensions: str) -> Event:
    attributes = {"specversion": "1.0", "id": "b-1", "source": "/b", "type": "t", **extensions}
    return Event.create(attributes, None)


def test_attribute_bounds_name_the_attribute() -> None:
    limits = AttributeLimits(count=10, value_bytes=100, total_bytes=300)
    check_attributes(event(small="x" * 50), limits)
    with pytest.raises(HTTPProblem) as big:
        check_attributes(event(big="x" * 200), limits)
    assert (big.value.status, big.value.field) == (413, "big")
    with pytest.raises(HTTPProblem) as wide:
        check_attributes(event(**{f"e{n}": "x" for n in range(10)}), limits)
    assert (wide.value.status, wide.value.field) == (400, "attributes")
    with pytest.raises(HTTPProblem) as total:
        check_attributes(event(a="x" * 90, b="x" * 90, c="x" * 90, d="x" * 90), limits)
    assert (total.value.status, total.value.field) == (413, "attributes")
    with pytest.raises(HTTPProblem):  # counted in UTF-8 bytes, not characters
        check_attributes(event(wide="é" * 60), limits)


def two_tenants(directory: Path, sink: Sink) -> Path:
    text = ""
    for namespace in ("team-a", "team-b"):
        text += (
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\n"
            f"metadata: {{name: default, namespace: {namespace}}}\n---\n"
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
            f"metadata: {{name: all, namespace: {namespace}}}\n"
            f"spec: {{broker: default, subscriber: {{uri: '{sink.url}/{namespace}'}}}}\n---\n"
        )
    write(directory / "config" / "mesh.yaml", text)
    return directory / "config"


async def default_mesh(directory: Path, env: dict[str, str]) -> MeshProcess:
    """`cemesh up` on the embedded broker with one broker, default/default."""
    write(directory / "config" / "b.yaml", broker_yaml())
    mesh = MeshProcess(directory / "config", env=env)
    await asyncio.to_thread(mesh.start)
    return mesh


@pytest.mark.connected
@pytest.mark.e2e
async def test_oversized_events_do_not_hurt_another_tenant(tmp_path: Path, sink: Sink) -> None:
    prefix = f"bounds{uuid.uuid4().hex[:8]}"
    mesh = MeshProcess(
        two_tenants(tmp_path, sink),
        extra=["--broker", AMQP_URL],
        env={"CEMESH_BROKER_PREFIX": prefix},
    )
    await asyncio.to_thread(mesh.start)
    statuses: dict[str, list[int]] = {"a": [], "b": []}

    async def tenant_a(session: aiohttp.ClientSession) -> None:
        for n in range(60):
            attributes: dict[str, object] = {
                "specversion": "1.0",
                "id": f"a-{n}",
                "source": "/a",
                "type": "t",
            }
            if n % 2:
                attributes["huge"] = "x" * 200_000
            else:
                attributes.update({f"ext{i}": "v" for i in range(10_000)})
            body = json.dumps(attributes).encode()
            headers = {"content-type": "application/cloudevents+json"}
            async with session.post(mesh.url + "/team-a/default", data=body, headers=headers) as r:
                problem = await r.json(content_type=None)
                statuses["a"].append(r.status)
                assert problem["field"] in ("huge", "attributes")

    async def tenant_b(session: aiohttp.ClientSession) -> None:
        for n in range(300):
            headers = {
                "ce-specversion": "1.0",
                "ce-id": f"b-{n}",
                "ce-source": "/b",
                "ce-type": "t",
            }
            async with session.post(mesh.url + "/team-b/default", headers=headers) as r:
                await r.read()
                statuses["b"].append(r.status)

    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(tenant_a(session), tenant_b(session))
        await sink.wait_for(300, path="/team-b", timeout=20)
    finally:
        await asyncio.to_thread(mesh.stop)
    assert set(statuses["a"]) <= {400, 413}
    assert statuses["b"] == [202] * 300
    assert "connection lost" not in mesh.output


def raw_request(port: int, payload: bytes, *, pace: float = 0.0) -> tuple[bytes, float]:
    """Send `payload` (byte by byte every `pace` seconds when set); the answer and its time."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        try:
            if pace:
                for byte in payload:
                    sock.sendall(bytes([byte]))
                    time.sleep(pace)
            else:
                sock.sendall(payload)
        except OSError:
            pass  # the server closed while we were still sending: read its answer
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started


@pytest.mark.e2e
async def test_request_heads_are_bounded(tmp_path: Path) -> None:
    mesh = await default_mesh(tmp_path, env={"CEMESH_HEADER_TIMEOUT": "1"})
    try:
        big = b"POST / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (8 * 1024 * 1024) + b"\r\n\r\n"
        answer, took = await asyncio.to_thread(raw_request, mesh.port, big)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        assert b'"field":"headers"' in answer.replace(b" ", b"")
        assert took < 5

        many = b"POST / HTTP/1.1\r\nhost: x\r\n" + b"".join(
            f"x-h{n}: v\r\n".encode() for n in range(10_000)
        )
        answer, _ = await asyncio.to_thread(raw_request, mesh.port, many + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]

        slow = b"POST / HTTP/1.1\r\nhost: x\r\nx-slow: " + b"s" * 40
        answer, took = await asyncio.to_thread(raw_request, mesh.port, slow, pace=0.05)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert took < 4

        async with aiohttp.ClientSession() as session:  # and ordinary requests still work
            headers = {"ce-specversion": "1.0", "ce-id": "ok", "ce-source": "/s", "ce-type": "t"}
            async with session.post(mesh.url, headers=headers) as r:
                assert r.status == 202
    finally:
        await asyncio.to_thread(mesh.stop)


def chunked_until_answered(port: int, path: str) -> tuple[bytes, int]:
    """POST a chunked body of 1 MiB chunks until the server answers; (answer, bytes sent)."""
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
    head += "x-gitlab-event: Push Hook\r\ncontent-type: application/json\r\n\r\n"
    chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        answer = b""
        for _ in range(200):  # 200 MiB at most
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            except OSError:
                break
            if answer:
                break
            try:
                sock.setblocking(True)
                sock.sendall(chunk)
                sock.setblocking(False)
            except OSError:
                break
            sent += len(chunk)
        sock.setblocking(True)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    return answer, sent


@pytest.mark.e2e
async def test_webhook_bodies_are_refused_while_they_stream(tmp_path: Path) -> None:
    mesh = await default_mesh(tmp_path, env={"CEMESH_ALLOW_UNSIGNED_WEBHOOKS": "1"})
    try:
        declared = (
            b"POST /webhooks/github HTTP/1.1\r\nhost: x\r\ncontent-length: 209715200\r\n"
            b"x-github-event: push\r\n\r\n"
        )
        answer, took = await asyncio.to_thread(raw_request, mesh.port, declared)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert took < 5
        answer, sent = await asyncio.to_thread(
            chunked_until_answered, mesh.port, "/webhooks/gitlab"
        )
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent <= 16 * 1024 * 1024  # the 4 MiB limit and what was in flight, not 200 MiB
    finally:
        await asyncio.to_thread(mesh.stop)
