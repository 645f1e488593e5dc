"""Prometheus metrics: names, labels and counts after known traffic, on a registry per app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from brokers.delivery import Destination
from brokers.errors import DeliveryRejected, DeliveryTimeout, SubscriberUnreachable
from brokers.transport import Outcome
from gateway.observability.metrics import Metrics, delivery_code, destination_label
from tests.unit.inprocess import Gateway, binary, gateway, route, until


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, keyed by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def observed(tmp_path: Path) -> AsyncIterator[Gateway]:
    orders = route("orders", "com.example.order")
    flaky = route("flaky", "com.example.flaky", retry=1)
    async with gateway(tmp_path, orders, flaky, sinks={"orders": 200, "flaky": 503}) as gw:
        yield gw


async def test_metrics_after_known_traffic(observed: Gateway) -> None:
    client = observed.http
    for i in range(3):
        r = await client.post("/default/default", headers=binary(f"o{i}", "com.example.order"))
        assert r.status_code == 202
    r = await client.post("/default/default", headers=binary("f1", "com.example.flaky"))
    assert r.status_code == 202
    r = await client.post("/nobody/here", headers=binary("x", "com.example.order"))
    assert r.status_code == 404
    stats = observed.mesh.dispatcher.stats
    await until(lambda: stats.delivered == 3 and stats.dead_lettered == 1)
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    found = samples(response.text)

    def v(name: str, **labels: str) -> float:
        return value(found, name, **labels)

    broker = "default/default"
    assert v("cemesh_ingress_requests_total", broker=broker, status="202") == 4
    assert v("cemesh_ingress_requests_total", broker="unknown", status="404") == 1
    assert v("cemesh_ingress_events_total", broker=broker) == 4
    assert v("cemesh_ingress_request_duration_seconds_count", broker=broker) == 4
    assert v("cemesh_ingress_request_duration_seconds_bucket", broker=broker, le="+Inf") == 4
    orders, flaky = "default/orders", "default/flaky"
    assert v("cemesh_deliveries_total", trigger=orders, outcome="success", code="200") == 3
    assert v("cemesh_deliveries_total", trigger=flaky, outcome="failure", code="503") == 2
    assert v("cemesh_delivery_retries_total", trigger=flaky) == 1
    assert v("cemesh_delivery_retries_total", trigger=orders) == 0
    assert v("cemesh_dead_letters_total", trigger=flaky) == 1
    assert v("cemesh_dead_letters_total", trigger=orders) == 0
    assert v("cemesh_delivery_latency_seconds_count", trigger=orders) == 3
    duration = "cemesh_delivery_request_duration_seconds_count"
    assert v(duration, destination="function:orders") == 3
    assert v(duration, destination="function:flaky") == 2
    assert [body for _, body in observed.received("orders")] == [b"", b"", b""]
    assert len(observed.received("flaky")) == 2
    assert v("cemesh_replies_total") == 0
    assert v("cemesh_ttl_dropped_total") == 0
    assert v("cemesh_live_clients") == 0
    # ms-scale buckets: the smallest bound is half a millisecond
    bounds = {dict(k[1]).get("le") for k in found if k[0].endswith("_bucket")}
    assert "0.0005" in bounds


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.observe_ingress("default/default", 202, 0.001)
    first.observe_ingress("default/default", 202, 0.001)
    second.observe_ingress("default/default", 202, 0.001)
    one = samples(first.render().decode())
    two = samples(second.render().decode())
    labels = {"broker": "default/default", "status": "202"}
    assert value(one, "cemesh_ingress_requests_total", **labels) == 2
    assert value(two, "cemesh_ingress_requests_total", **labels) == 1


def test_request_reply_and_function_calls_are_labelled_by_outcome(observed: Gateway) -> None:
    obs = observed.observability

    def post(path: str, status: int) -> None:
        obs.record({"type": "http", "method": "POST", "path": path}, status, 0.01)

    post("/default/default/request", 200)
    post("/default/default/request", 504)
    post("/default/default/request", 403)
    post("/default/other/request", 500)
    post("/functions/nosuch", 404)
    post("/default/default", 401)  # rejected before routing: still ingress
    found = samples(obs.metrics.render().decode())
    broker = "default/default"
    assert value(found, "cemesh_request_reply_total", broker=broker, outcome="replied") == 1
    assert value(found, "cemesh_request_reply_total", broker=broker, outcome="timeout") == 1
    assert value(found, "cemesh_request_reply_total", broker=broker, outcome="rejected") == 1
    assert value(found, "cemesh_request_reply_total", broker="unknown", outcome="error") == 1
    assert value(found, "cemesh_request_reply_duration_seconds_count", broker=broker) == 3
    assert value(found, "cemesh_function_calls_total", function="unknown", status="404") == 1
    assert value(found, "cemesh_ingress_requests_total", broker=broker, status="401") == 1


def test_delivery_code_and_destination_labels() -> None:
    assert delivery_code(Outcome(True, 200)) == "200"
    assert delivery_code(Outcome(False, fault=DeliveryTimeout("no answer within 1s"))) == "timeout"
    assert delivery_code(Outcome(False, fault=SubscriberUnreachable("refused"))) == "error"
    assert delivery_code(Outcome(False, 503, fault=DeliveryRejected(503))) == "503"
    secret = Destination(uri="https://user:pw@hooks.example:8443/path?token=abc#x")
    assert destination_label(secret) == "https://hooks.example:8443/path"
    assert destination_label(Destination(function="greeter")) == "function:greeter"
