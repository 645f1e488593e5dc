"""The deployments function's own tests, in the shape of func's Python template tests: call
handle() with an ASGI scope carrying the event, capture what it sends. Memory state always;
Redis too when one answers on REDIS_URL (default 127.0.0.1:6379)."""

import json
import os
import socket
import uuid

import pytest
import pytest_asyncio
from cloudevents.core.v1.event import CloudEvent

from function import new

REDIS_URL = os.environ.get("CEMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_up():
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def _cdevent(kind, service, environment, timestamp, artifact=None, event_id=None):
    content = {"environment": {"id": environment}}
    if artifact is not None:
        content["artifactId"] = artifact
    return CloudEvent(
        {
            "type": f"dev.cdevents.service.{kind}.0.3.0",
            "source": "/ci",
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "datacontenttype": "application/json",
        },
        {
            "context": {
                "specversion": "0.5.1",
                "id": event_id or str(uuid.uuid4()),
                "source": "/ci",
                "type": f"dev.cdevents.service.{kind}.0.3.0",
                "timestamp": timestamp,
            },
            "subject": {"id": service, "content": content},
        },
    )


def _query(data):
    return CloudEvent(
        {
            "type": "com.example.deployments.query",
            "source": "/test",
            "id": "q-1",
            "specversion": "1.0",
            "datacontenttype": "application/json",
        },
        data,
    )


class Sent:
    """What handle() sent: reply events, and raw HTTP answers through `send.http`."""

    def __init__(self):
        self.events = []
        self.statuses = []

    async def __call__(self, event, status=200):
        self.events.append(event)

    async def http(self, message):
        if message["type"] == "http.response.start":
            self.statuses.append(message["status"])


@pytest_asyncio.fixture(params=["memory", "redis"])
async def function(request):
    if request.param == "redis" and not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379")
    instance = new()
    prefix = f"test:{uuid.uuid4().hex}"
    url = REDIS_URL if request.param == "redis" else ""
    instance.start({"REDIS_URL": url, "CEMESH_STATE_PREFIX": prefix})
    yield instance
    if request.param == "redis":
        await _cleanup(instance.store, prefix)


async def _cleanup(store, prefix):
    keys = [k async for k in store._client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await store._client.delete(*keys)
    await store.close()


async def _send(function, event):
    sent = Sent()
    await function.handle({"event": event}, None, sent)
    return sent


async def _ask(function, data):
    (reply,) = (await _send(function, _query(data))).events
    assert reply.get_type() == "com.example.deployments.result"
    return reply.get_data()


@pytest.mark.asyncio
async def test_tracks_deployments_and_answers_queries(function):
    sent = await _send(
        function,
        _cdevent("deployed", "shop", "prod", "2026-11-22T10:00:00Z", "pkg:oci/shop@sha256%3Aaaa"),
    )
    assert sent.statuses == [202]
    assert sent.events == []
    await _send(
        function,
        _cdevent("deployed", "cart", "prod", "2026-11-22T10:01:00Z", "pkg:oci/cart@sha256%3Abbb"),
    )
    await _send(
        function,
        _cdevent(
            "deployed", "shop", "staging", "2026-11-22T10:02:00Z", "pkg:oci/shop@sha256%3Accc"
        ),
    )
    await _send(
        function,
        _cdevent("upgraded", "shop", "prod", "2026-11-22T11:00:00Z", "pkg:oci/shop@sha256%3Addd"),
    )

    prod = await _ask(function, {"environment": "prod"})
    assert prod["environment"] == "prod"
    assert prod["services"]["shop"]["artifactId"] == "pkg:oci/shop@sha256%3Addd"
    assert prod["services"]["shop"]["action"] == "upgraded"
    assert prod["services"]["cart"]["artifactId"] == "pkg:oci/cart@sha256%3Abbb"

    everything = await _ask(function, {})
    assert sorted(everything["environments"]) == ["prod", "staging"]
    assert everything["environments"]["staging"]["shop"]["since"] == "2026-11-22T10:02:00Z"


@pytest.mark.asyncio
async def test_removal_and_out_of_order_events(function):
    await _send(function, _cdevent("deployed", "shop", "prod", "2026-11-22T10:00:00Z", "v2"))
    # an older event arriving late changes nothing
    await _send(function, _cdevent("deployed", "shop", "prod", "2026-11-22T09:00:00Z", "v1"))
    assert (await _ask(function, {"environment": "prod"}))["services"]["shop"]["artifactId"] == "v2"
    await _send(function, _cdevent("removed", "shop", "prod", "2026-11-22T12:00:00Z"))
    assert (await _ask(function, {"environment": "prod"}))["services"] == {}
    # a deployment older than the removal does not bring it back; a newer one does
    await _send(function, _cdevent("rolledback", "shop", "prod", "2026-11-22T11:00:00Z", "v1"))
    assert (await _ask(function, {"environment": "prod"}))["services"] == {}
    await _send(function, _cdevent("deployed", "shop", "prod", "2026-11-22T13:00:00Z", "v3"))
    assert (await _ask(function, {"environment": "prod"}))["services"]["shop"]["artifactId"] == "v3"


@pytest.mark.asyncio
async def test_redelivered_event_is_harmless(function):
    event = _cdevent("deployed", "shop", "prod", "2026-11-22T10:00:00Z", "v1", event_id="same")
    await _send(function, event)
    await _send(function, event)
    services = (await _ask(function, {"environment": "prod"}))["services"]
    assert list(services) == ["shop"]


@pytest.mark.asyncio
async def test_malformed_events_are_rejected_with_400(function):
    no_env = _cdevent("deployed", "shop", "", "2026-11-22T10:00:00Z", "v1")
    assert (await _send(function, no_env)).statuses == [400]
    no_artifact = _cdevent("deployed", "shop", "prod", "2026-11-22T10:00:00Z")
    assert (await _send(function, no_artifact)).statuses == [400]
    bad_query = await _send(function, _query(json.dumps([1, 2])))
    assert bad_query.statuses == [400]


@pytest.mark.asyncio
async def test_the_official_example_is_understood(function):
    example = {
        "context": {
            "specversion": "0.5.1",
            "id": "271069a8-fc18-44f1-b38f-9d70a1695819",
            "source": "/event/source/123",
            "type": "dev.cdevents.service.deployed.0.3.0",
            "timestamp": "2023-03-20T14:27:05.315384Z",
        },
        "subject": {
            "id": "mySubject123",
            "source": "/event/source/123",
            "content": {
                "environment": {"id": "test123"},
                "artifactId": "pkg:oci/myapp@sha256%3A0b31b1c02ff4",
            },
        },
    }
    event = CloudEvent(
        {
            "type": "dev.cdevents.service.deployed.0.3.0",
            "source": "/event/source/123",
            "id": "x",
            "specversion": "1.0",
            "datacontenttype": "application/json",
        },
        example,
    )
    await _send(function, event)
    services = (await _ask(function, {"environment": "test123"}))["services"]
    assert services["mySubject123"]["artifactId"] == "pkg:oci/myapp@sha256%3A0b31b1c02ff4"
