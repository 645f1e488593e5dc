"""Bare ASGI plumbing shared by the endpoints and middleware that skip the framework on the
hot path: the callable types, problem answers, and the tenant the guard admitted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from gateway.problems import HTTPProblem, asgi_headers, body_of

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
