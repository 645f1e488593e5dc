"""Delivery semantics over the memory broker, with a scripted in-memory Transport (the port's
double: the real aiohttp transport is exercised end to end)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from brokers.delivery import DeliverySpec, Destination
from brokers.dispatch import Dispatcher
from brokers.errors import DeliveryTimeout, SubscriberUnreachable
from brokers.event import Event
from brokers.filters import compile_attributes
from brokers.knative import reply_stamp
from brokers.memory import MemoryBroker
from brokers.transport import Response, retry_after
from brokers.triggers import BrokerSpec, MeshConfig, TriggerSpec

SINK = Destination(uri="http://sink/")
DLS = Destination(uri="http://dls/")


@dataclass
class ScriptedTransport:
    """Answers each POST with the next scripted response (or raises it)."""

    script: dict[str, list[Response | Exception]] = field(default_factory=dict)
    calls: list[tuple[str, float, dict[str, str], bytes]] = field(default_factory=list)

    async def post(
        self,
        destination: Destination,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> Response:
        url = destination.uri or ""
        self.calls.append((url, time.monotonic(), dict(headers), body))
        answers = self.script.get(url, [])
        answer = (
            answers.pop(0)
            if len(answers) > 1
            else (answers[0] if answers else Response(200, {}, b""))
        )
        if isinstance(answer, Exception):
            raise answer
        return answer

    def to(self, url: str) -> list[tuple[str, float, dict[str, str], bytes]]:
        return [c for c in self.calls if c[0] == url]


def _event(id_: str = "e1", **extra: str | int) -> Event:
    return Event.create(
        {"specversion": "1.0", "id": id_, "source": "/t", "type": "t.x", **extra}, b'{"a":1}'
    )


async def _mesh(
    transport: ScriptedTransport, delivery: DeliverySpec
) -> tuple[MemoryBroker, Dispatcher]:
    trigger = TriggerSpec(
        "default", "tr", "default", SINK, compile_attributes({"type": "t.x"}), delivery
    )
    config = MeshConfig({"default/default": BrokerSpec("default", "default")}, [trigger])
    broker = MemoryBroker()
    await broker.open(config)
    dispatcher = Dispatcher(config, broker, transport)
    await dispatcher.start()
    return broker, dispatcher


async def _until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def test_fails_twice_then_succeeds_with_exponential_backoff() -> None:
    transport = ScriptedTransport(
        {"http://sink/": [Response(503, {}, b""), Response(500, {}, b""), Response(200, {}, b"")]}
    )
    broker, dispatcher = await _mesh(transport, DeliverySpec(retry=3, backoff_delay=0.05))
    await broker.publish("default/default", [_event()])
    await _until(lambda: dispatcher.stats.delivered == 1)
    times = [c[1] for c in transport.to("http://sink/")]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.1 * 0.9  # 0.05 * 2^1
    assert times[2] - times[1] >= 0.2 * 0.9  # 0.05 * 2^2
    assert dispatcher.stats.dead_lettered == 0
    await broker.close()


async def test_linear_backoff_and_retry_after_is_honoured() -> None:
    transport = ScriptedTransport(
        {"http://sink/": [Response(429, {"retry-after": "0.3"}, b""), Response(200, {}, b"")]}
    )
    broker, dispatcher = await _mesh(
        transport, DeliverySpec(retry=1, backoff_policy="linear", backoff_delay=0.01)
    )
    await broker.publish("default/default", [_event()])
    await _until(lambda: dispatcher.stats.delivered == 1)
    first, second = (c[1] for c in transport.to("http://sink/"))
    assert second - first >= 0.3 * 0.9
    await broker.close()


async def test_exhausted_retries_go_to_the_dead_letter_sink_with_error_extensions() -> None:
    body = b"x" * 2000
    transport = ScriptedTransport({"http://sink/": [Response(500, {}, body)]})
    broker, _ = await _mesh(
        transport, DeliverySpec(retry=2, backoff_delay=0.01, dead_letter_sink=DLS)
    )
    await broker.publish("default/default", [_event()])
    await _until(lambda: len(transport.to("http://dls/")) == 1)
    assert len(transport.to("http://sink/")) == 3
    _, _, headers, sent = transport.to("http://dls/")[0]
    assert headers["ce-knativeerrordest"] == "http://sink/"
    assert headers["ce-knativeerrorcode"] == "500"
    assert base64.b64decode(headers["ce-knativeerrordata"]) == body[:1024]
    assert sent == b'{"a":1}'
    await broker.close()


async def test_not_retried_on_400_and_kept_without_a_sink() -> None:
    transport = ScriptedTransport({"http://sink/": [Response(400, {}, b"bad")]})
    broker, dispatcher = await _mesh(transport, DeliverySpec(retry=5, backoff_delay=0.01))
    await broker.publish("default/default", [_event()])
    await _until(lambda: dispatcher.stats.dead_lettered == 1)
    assert len(transport.calls) == 1
    (parked,) = await broker.dead_letters("default/tr")
    assert parked.event.get("knativeerrorcode") == "400"


async def test_a_dead_letter_sink_that_is_down_is_retried_not_dropped() -> None:
    transport = ScriptedTransport(
        {
            "http://sink/": [Response(500, {}, b"")],
            "http://dls/": [
                SubscriberUnreachable("connection refused"),
                Response(503, {}, b""),
                Response(202, {}, b""),
            ],
        }
    )
    broker, dispatcher = await _mesh(
        transport, DeliverySpec(retry=0, backoff_delay=0.01, dead_letter_sink=DLS)
    )
    await broker.publish("default/default", [_event()])
    await _until(lambda: dispatcher.stats.dead_lettered == 1)
    assert len(transport.to("http://dls/")) == 3
    assert len(transport.to("http://sink/")) == 1  # the subscriber is not retried again


async def test_timeouts_and_network_errors_are_retried() -> None:
    transport = ScriptedTransport(
        {
            "http://sink/": [
                DeliveryTimeout("no answer"),
                SubscriberUnreachable("reset"),
                Response(200, {}, b""),
            ]
        }
    )
    broker, dispatcher = await _mesh(transport, DeliverySpec(retry=2, backoff_delay=0.01))
    await broker.publish("default/default", [_event()])
    await _until(lambda: dispatcher.stats.delivered == 1)
    assert len(transport.calls) == 3


async def test_a_non_cloudevent_body_is_a_failed_delivery() -> None:
    transport = ScriptedTransport(
        {"http://sink/": [Response(200, {"content-type": "text/plain"}, b"hello")]}
    )
    broker, dispatcher = await _mesh(transport, DeliverySpec(retry=0))
    await broker.publish("default/default", [_event()])
    await _until(lambda: dispatcher.stats.dead_lettered == 1)
    (parked,) = await broker.dead_letters("default/tr")
    assert parked.event.get("knativeerrorcode") == "502"


async def test_delivery_headers_are_binary_mode_with_prefer_reply() -> None:
    transport = ScriptedTransport()
    broker, dispatcher = await _mesh(transport, DeliverySpec())
    await broker.publish(
        "default/default", [_event(traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")]
    )
    await _until(lambda: dispatcher.stats.delivered == 1)
    _, _, headers, body = transport.calls[0]
    assert headers["prefer"] == "reply"
    assert headers["ce-id"] == "e1"
    assert headers["traceparent"].startswith("00-aaaa")
    assert body == b'{"a":1}'


def test_reply_inherits_ttl_and_correlation() -> None:
    request = _event(knativebrokerttl=3, correlationid="c-1")
    reply = Event.create({"specversion": "1.0", "id": "r", "source": "/f", "type": "t.reply"})
    stamped = reply_stamp(request, reply)
    assert stamped is not None
    assert stamped.get("knativebrokerttl") == 2
    assert stamped.get("replyid") == "c-1"
    assert reply_stamp(_event(knativebrokerttl=1), reply) is None


@pytest.mark.parametrize(("value", "expected"), [("2", 2.0), (None, None), ("soon", None)])
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert retry_after(value) == expected


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
