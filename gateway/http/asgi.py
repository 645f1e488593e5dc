"""Bare ASGI plumbing shared by the endpoints and middleware that skip the framework on the
hot path: the callable types, problem answers, and the tenant the guard admitted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from gateway.http.problems import HTTPProblem, asgi_headers, body_of

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

TENANT_KEY: Final = "cemesh.tenant"
"""Where the guard leaves the request's tenant, in `scope["state"]`, for the handlers."""


def tenant_of(scope: Scope) -> str:
    """The tenant the guard admitted a request for (its token, else its namespace)."""
    state = scope.get("state") or {}
    return str(state.get(TENANT_KEY) or "anonymous")


async def send_problem(send: Send, problem: HTTPProblem, instance: str | None = None) -> None:
    body = body_of(problem, instance)
    await send(
        {
            "type": "http.response.start",
            "status": problem.status,
            "headers": asgi_headers(problem, body),
        }
    )
    await send({"type": "http.response.body", "body": body})


DISCARD_LIMIT: Final = 2 * 1024 * 1024
"""How much of a refused body is still read and thrown away, so the client (which is usually
still sending) reads the 413 instead of a connection reset."""


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float = 30.0) -> bytes:
    """The request body: 413 as soon as it is over `limit` bytes, 408 when it takes longer
    than `timeout` seconds (a slow body holds a request slot of its tenant meanwhile)."""
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        raise await _too_large(receive, limit, reset=declared > DISCARD_LIMIT)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise HTTPProblem(
                        400, "Client Disconnected", "the request body was not completed"
                    )
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise await _too_large(receive, limit, reset=False, more=message)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise HTTPProblem(
            408,
            "Request Timeout",
            f"the request body did not arrive within {timeout:g}s",
            headers={"connection": "close"},
            field="body",
        ) from None


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length" and value.isdigit():
            return int(value)
    return None


async def _too_large(
    receive: Receive,
    limit: int,
    *,
    reset: bool,
    more: MutableMapping[str, Any] | None = None,
) -> HTTPProblem:
    """The 413 for a body over `limit`. Up to `DISCARD_LIMIT` bytes of the rest are read and
    dropped first (for at most a second) so the answer reaches a client still sending; past
    that the connection is closed rather than read on."""
    if not reset:
        reset = not await _discard(receive, more)
    return HTTPProblem(
        413,
        "Content Too Large",
        f"the request body is over {limit} bytes",
        headers={"connection": "close"} if reset else {},
        field="body",
    )


async def _discard(receive: Receive, message: MutableMapping[str, Any] | None) -> bool:
    """Read and drop the rest of a body; whether it ended within the discard budget."""
    dropped = 0
    try:
        async with asyncio.timeout(1.0):
            while message is None or message.get("more_body", False):
                message = await receive()
                if message["type"] == "http.disconnect":
                    return False
                dropped += len(message.get("body", b""))
                if dropped > DISCARD_LIMIT:
                    return False
    except TimeoutError:
        return False
    return True
