"""The delivery transport's boundary: aiohttp's, asyncio's and the OS's exceptions leave it as
cemesh's `DeliveryError`s, and the dispatcher's `Outcome` carries that type (no network)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from brokers.delivery import Destination
from brokers.errors import (
    BrokerError,
    DeliveryError,
    DeliveryRejected,
    DeliveryTimeout,
    SubscriberUnreachable,
)
from brokers.event import Event
from brokers.knative import error_extensions
from brokers.transport import attempt
from gateway.hosting.funcyaml import FuncYaml
from gateway.hosting.python import FunctionHost, FunctionProject, HostedFunction
from gateway.hosting.transport import MeshTransport, translated
from gateway.http.problems import from_exception
from gateway.observability.metrics import delivery_code


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (TimeoutError(), DeliveryTimeout),
        (aiohttp.ServerTimeoutError("read timed out"), DeliveryTimeout),
        (aiohttp.ClientOSError(111, "Connection refused"), SubscriberUnreachable),
        (aiohttp.ServerDisconnectedError(), SubscriberUnreachable),
        (ConnectionResetError("reset by peer"), SubscriberUnreachable),
        (aiohttp.ClientPayloadError("truncated body"), DeliveryError),
        (aiohttp.InvalidURL("not a url"), DeliveryError),
    ],
)
def test_library_errors_become_delivery_errors(
    raised: Exception, expected: type[DeliveryError]
) -> None:
    with pytest.raises(DeliveryError) as caught, translated(2.5):
        raise raised
    assert type(caught.value) is expected
    assert isinstance(caught.value, BrokerError)
    assert caught.value.__cause__ is raised  # `raise ... from exc`: the original stays visible
    assert str(caught.value)


def test_a_timeout_says_how_long_it_waited() -> None:
    with pytest.raises(DeliveryTimeout) as caught, translated(2.5):
        raise TimeoutError
    assert (str(caught.value), caught.value.timeout) == ("no answer within 2.5s", 2.5)


def test_delivery_errors_and_unknown_errors_pass_through() -> None:
    ours = SubscriberUnreachable("already ours")
    with pytest.raises(SubscriberUnreachable) as caught, translated(1):
        raise ours
    assert caught.value is ours
    with pytest.raises(KeyError), translated(1):
        raise KeyError("a bug, not a delivery fault")


async def test_a_closed_transport_and_a_missing_function_are_unreachable() -> None:
    transport = MeshTransport()
    with pytest.raises(SubscriberUnreachable, match="closed"):
        await transport.post(Destination(uri="http://127.0.0.1:9/"), [], b"", 1.0)
    with pytest.raises(SubscriberUnreachable, match="no function host"):
        await transport.post(Destination(function="greeter"), [], b"", 1.0)
    host = MeshTransport(FunctionHost([]))
    with pytest.raises(SubscriberUnreachable, match="not running"):
        await host.post(Destination(function="greeter"), [], b"", 1.0)


def _hosting(app: Any) -> MeshTransport:
    project = FunctionProject(
        "slow",
        Path("functions/slow"),
        FuncYaml(specVersion="0.36.0", created="2024-01-01T00:00:00Z"),
        "default",
    )
    functions = FunctionHost([project])
    functions.hosted["slow"] = HostedFunction(project, None, app)
    return MeshTransport(functions)


async def _silent(scope: Mapping[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(10)


EVENT = Event.create({"specversion": "1.0", "id": "e1", "source": "/t", "type": "t.x"})


async def test_an_outcome_carries_the_typed_error() -> None:
    slow = Destination(function="slow")
    outcome = await attempt(_hosting(_silent), slow, EVENT, 0.05)
    assert (outcome.ok, outcome.status, outcome.retryable) == (False, 0, True)
    assert isinstance(outcome.fault, DeliveryTimeout)
    assert outcome.error == "no answer within 0.05s"
    assert delivery_code(outcome) == "timeout"
    data = error_extensions(slow, outcome)["knativeerrordata"]
    assert base64.b64decode(data) == b"no answer within 0.05s"


async def test_an_error_status_is_a_rejection() -> None:
    async def unavailable(scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"busy"})

    outcome = await attempt(_hosting(unavailable), Destination(function="slow"), EVENT, 1.0)
    assert isinstance(outcome.fault, DeliveryRejected)
    assert (outcome.fault.status, outcome.error, delivery_code(outcome)) == (503, "HTTP 503", "503")


def test_delivery_errors_map_to_gateway_statuses() -> None:
    assert from_exception(DeliveryTimeout("no answer within 1s", timeout=1)).status == 504
    assert from_exception(SubscriberUnreachable("refused")).status == 502
