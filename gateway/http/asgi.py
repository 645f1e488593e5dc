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


async def read_body(scope: Scope, receive: Receive, limit: int, timeout: float = 30.0) -> bytes:
    """The request body: 413 as soon as it is over `limit` bytes, 408 when it takes longer
    than `timeout` seconds (a slow body holds a request slot of its tenant meanwhile)."""
    for key, value in scope.get("headers", ()):
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise _too_large(limit)
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
                    raise _too_large(limit)
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


def _too_large(limit: int) -> HTTPProblem:
    # The rest of the body is not read: the connection cannot be reused for the next request.
    return HTTPProblem(
        413,
        "Content Too Large",
        f"the request body is over {limit} bytes",
        headers={"connection": "close"},
        field="body",
    )
