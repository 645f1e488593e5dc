"""The greeter's own tests, in the shape of func's Python template tests: call handle()
with an ASGI scope carrying the event, capture what it sends."""

import json

import pytest
from cloudevents.core.v1.event import CloudEvent

from function import new


def _event(data):
    return CloudEvent(
        {
            "type": "com.example.greet.request",
            "source": "/test",
            "id": "req-1",
            "specversion": "1.0",
            "datacontenttype": "application/json",
        },
        data,
    )


async def _call(data):
    function = new()
    function.start({"GREETING": "Hello"})
    sent = []

    async def send(event, status=200):
        sent.append(event)

    await function.handle({"event": _event(data)}, None, send)
    return sent


@pytest.mark.asyncio
async def test_replies_with_a_greeting():
    (reply,) = await _call({"name": "Ada"})
    assert reply.get_type() == "com.example.greeting"
    assert reply.get_subject() == "req-1"
    assert reply.get_data() == {"message": "Hello, Ada!"}


@pytest.mark.asyncio
async def test_greets_the_world_without_a_name():
    (reply,) = await _call(json.dumps({}).encode())
    assert reply.get_data() == {"message": "Hello, world!"}
