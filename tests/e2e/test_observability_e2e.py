"""Observability end to end (issue 9, items 5 and 6): `cemesh up` in a subprocess, known
traffic in, then the metric names and labels a Prometheus would scrape, a trace id followed
from the request to its delivery and to the function's reply, and the live stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import binary, broker_yaml, documents, trigger_yaml
from tests.e2e.harness import (
    MeshProcess,
    Received,
    Responder,
    Sink,
    copy_function,
    mesh_config,
    post,
)

pytestmark = pytest.mark.e2e

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
PARENT = f"00-{TRACE}-{SPAN}-01"


def mesh_yaml(sink: str) -> str:
    flaky = {"retry": 1, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"}
    return documents(
        broker_yaml(),
        trigger_yaml("orders", f"{sink}/orders", type="com.example.order"),
        trigger_yaml("flaky", f"{sink}/flaky", type="com.example.flaky", delivery=flaky),
        trigger_yaml("requests", f"{sink}/requests", type="com.example.greet.request"),
        trigger_yaml("greetings", f"{sink}/greetings", type="com.example.greeting"),
    )


def _answer(item: Received) -> web.Response:
    return web.Response(status=503 if item.path == "/flaky" else 200)


@pytest.fixture
def sink_responder() -> Responder:
    return _answer


@pytest.fixture
def mesh(tmp_path: Path, sink: Sink) -> Iterator[MeshProcess]:
    config = mesh_config(tmp_path, mesh_yaml(sink.url))
    copy_function(tmp_path / "functions", "greeter")
    with MeshProcess(config, tmp_path / "functions", extra=["--log-format", "json"]) as process:
        yield process


async def _post(url: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    status, response_headers, _ = await post(url, headers, body)
    return status, response_headers


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _metrics(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as r:
        if r.status == 404:
            pytest.skip("observability is not wired into gateway/http/app.py yet")
        assert r.status == 200
        text = await r.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _event(event_id: str, event_type: str, **extra: str) -> dict[str, str]:
    return binary(event_id, event_type, "/e2e", **{"content-type": "application/json", **extra})


async def _until_metric(url: str, name: str, labels: dict[str, str], wanted: float) -> Samples:
    deadline = time.monotonic() + 10
    while True:
        found = await _metrics(url)
        if found.get((name, frozenset(labels.items())), 0) >= wanted:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} never reached {wanted}")
        await asyncio.sleep(0.1)


async def test_metric_names_and_labels_after_known_traffic(mesh: MeshProcess, sink: Sink) -> None:
    await _metrics(mesh.url)  # skips when not wired
    ingress = mesh.url + "/default/default"
    for i in range(3):
        assert (await _post(ingress, _event(f"o{i}", "com.example.order"), b"{}"))[0] == 202
    assert (await _post(ingress, _event("f1", "com.example.flaky"), b"{}"))[0] == 202
    missing_id = {k: v for k, v in _event("x", "com.example.order").items() if k != "ce-id"}
    assert (await _post(ingress, missing_id, b"{}"))[0] == 400
    assert (await _post(mesh.url + "/nobody/here", _event("y", "t"), b"{}"))[0] == 404
    await sink.wait_for(3, path="/orders")
    found = await _until_metric(
        mesh.url, "cemesh_dead_letters_total", {"trigger": "default/flaky"}, 1
    )

    def v(name: str, **labels: str) -> float:
        return found.get((name, frozenset(labels.items())), 0.0)

    broker = "default/default"
    assert v("cemesh_ingress_requests_total", broker=broker, status="202") == 4
    assert v("cemesh_ingress_requests_total", broker=broker, status="400") == 1
    assert v("cemesh_ingress_requests_total", broker="unknown", status="404") == 1
    assert v("cemesh_ingress_events_total", broker=broker) == 4
    assert v("cemesh_ingress_request_duration_seconds_count", broker=broker) == 5
    assert (
        v("cemesh_deliveries_total", trigger="default/orders", outcome="success", code="200") == 3
    )
    assert v("cemesh_deliveries_total", trigger="default/flaky", outcome="failure", code="503") == 2
    assert v("cemesh_delivery_retries_total", trigger="default/flaky") == 1
    assert v("cemesh_dead_letters_total", trigger="default/flaky") == 1
    assert v("cemesh_dead_letters_total", trigger="default/orders") == 0
    assert v("cemesh_delivery_latency_seconds_count", trigger="default/orders") == 3
    orders_uri = f"{sink.url}/orders"
    assert v("cemesh_delivery_request_duration_seconds_count", destination=orders_uri) == 3
    assert v("cemesh_live_clients") == 0


async def test_trace_followed_from_request_to_delivery_to_reply(
    mesh: MeshProcess, sink: Sink
) -> None:
    await _metrics(mesh.url)  # skips when not wired
    headers = _event("g1", "com.example.greet.request", traceparent=PARENT)
    status, _ = await _post(mesh.url + "/default/default", headers, b'{"name": "Ada"}')
    assert status == 202
    (delivered,) = await sink.wait_for(1, path="/requests")
    assert delivered.headers["traceparent"] == PARENT  # HTTP header, as the caller sent it
    assert delivered.headers["ce-traceparent"] == PARENT  # CloudEvents extension
    (reply,) = await sink.wait_for(1, path="/greetings")
    assert json.loads(reply.body) == {"message": "Hello, Ada!"}
    assert reply.headers["ce-subject"] == "g1"
    version, trace_id, span_id, flags = reply.headers["ce-traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01")  # the same trace...
    assert span_id != SPAN  # ...one hop further
    assert reply.headers["traceparent"] == reply.headers["ce-traceparent"]
    found = await _until_metric(mesh.url, "cemesh_replies_total", {}, 1)
    assert found[("cemesh_replies_total", frozenset())] >= 1


async def test_request_reply_answer_carries_the_trace(mesh: MeshProcess) -> None:
    await _metrics(mesh.url)  # skips when not wired
    headers = _event("rr1", "com.example.greet.request", traceparent=PARENT)
    status, answer = await _post(
        mesh.url + "/default/default/request?timeout=10", headers, b'{"name": "Bo"}'
    )
    assert status == 200
    assert answer["ce-type"] == "com.example.greeting"
    assert answer["ce-traceparent"].split("-")[1] == TRACE
    found = await _metrics(mesh.url)
    outcome = {"broker": "default/default", "outcome": "replied"}
    assert found[("cemesh_request_reply_total", frozenset(outcome.items()))] == 1


async def test_json_logs_carry_the_trace_id(mesh: MeshProcess, sink: Sink) -> None:
    await _metrics(mesh.url)  # skips when not wired
    headers = _event("f2", "com.example.flaky", traceparent=PARENT)
    assert (await _post(mesh.url + "/default/default", headers, b"{}"))[0] == 202
    await sink.wait_for(2, path="/flaky")
    await _until_metric(mesh.url, "cemesh_dead_letters_total", {"trigger": "default/flaky"}, 1)
    output = mesh.stop()
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    failed = [r for r in records if r.get("message") == "delivery failed"]
    assert failed, output
    assert all(r.get("trace_id") == TRACE and r.get("ce_id") == "f2" for r in failed), failed


async def test_live_stream_shows_accepted_events_and_outcomes(mesh: MeshProcess) -> None:
    await _metrics(mesh.url)  # skips when not wired
    frames: list[tuple[str, dict[str, Any]]] = []
    async with (
        aiohttp.ClientSession() as session,
        session.get(mesh.url + "/events/stream", params={"broker": "default/default"}) as r,
    ):
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        posted = False
        kind = ""
        async with asyncio.timeout(10):
            async for raw in r.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    frames.append((kind, json.loads(line[6:])))
                if kind == "hello" and not posted:
                    posted = True
                    headers = _event("live-1", "com.example.order")
                    assert (await _post(mesh.url + "/default/default", headers, b"{}"))[0] == 202
                if any(k == "delivery" for k, _ in frames):
                    break
    hello = frames[0][1]
    assert hello["brokers"] == ["default/default"]
    accepted = next(d for k, d in frames if k == "accepted")
    assert (accepted["id"], accepted["triggers"]) == ("live-1", ["default/orders"])
    delivery = next(d for k, d in frames if k == "delivery")
    assert (delivery["trigger"], delivery["ok"], delivery["code"]) == (
        "default/orders",
        True,
        "200",
    )


async def test_spans_exported_when_an_otlp_endpoint_is_set(tmp_path: Path, sink: Sink) -> None:
    pytest.importorskip(
        "opentelemetry.exporter.otlp.proto.http",
        reason="optional: pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http",
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # type: ignore[import-not-found,unused-ignore]
        ExportTraceServiceRequest,
    )

    collector = await Sink().start()  # an OTLP/HTTP collector that accepts everything
    config = mesh_config(tmp_path, mesh_yaml(sink.url))
    functions = copy_function(tmp_path / "functions", "greeter").parent
    mesh = MeshProcess(config, functions, env={"CEMESH_OTEL_ENDPOINT": collector.url}).start()
    try:
        await _metrics(mesh.url)  # skips when not wired
        headers = _event("o1", "com.example.greet.request", traceparent=PARENT)
        assert (await _post(mesh.url + "/default/default", headers, b'{"name":"Cy"}'))[0] == 202
        (delivered,) = await sink.wait_for(1, path="/requests")
        (reply,) = await sink.wait_for(1, path="/greetings")
    finally:
        await asyncio.to_thread(mesh.stop)  # the exporter flushes on stop, to our collector
        await collector.stop()
    spans = []
    for request in collector.on("/v1/traces"):
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource in export.resource_spans:
            for scoped in resource.scope_spans:
                spans.extend(scoped.spans)
    assert {span.trace_id.hex() for span in spans} == {TRACE}
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (ingress,) = by_name["cemesh ingress"]
    assert ingress.parent_span_id.hex() == SPAN  # under the caller's span
    deliveries = {
        s.span_id.hex() for name, found in by_name.items() if "deliver" in name for s in found
    }
    (to_sink,) = by_name[f"cemesh deliver {sink.url}/requests"]
    assert to_sink.parent_span_id == ingress.span_id
    # the subscriber sees the delivery span as its parent, the event keeps the ingress span
    assert delivered.headers["traceparent"].split("-")[2] in deliveries
    assert delivered.headers["ce-traceparent"].split("-")[2] == ingress.span_id.hex()
    # the reply hangs under the delivery to the greeter that produced it
    (to_greeter,) = by_name["cemesh deliver function:greeter"]
    assert reply.headers["ce-traceparent"].split("-")[2] == to_greeter.span_id.hex()
