"""The gateway's HTTP surface: the app factory, broker ingress and request-reply, webhooks,
direct function calls, the admin API, the guard (tokens, tenancy, limits), problem answers
and the server with its request-head bounds.

Public names are re-exported lazily (gateway/lazy.py).
"""

from __future__ import annotations

from gateway.lazy import exports

_EXPORTS: dict[str, str] = {
    "AttributeLimits": "ingress",
    "BoundedHttpToolsProtocol": "limits",
    "BrokerInfo": "admin",
    "DeadLetterList": "admin",
    "DeadLetterOut": "admin",
    "DlqReplayRequest": "admin",
    "DlqReplayResult": "admin",
    "ErrorInfo": "admin",
    "EventPage": "admin",
    "Guard": "guard",
    "HTTPProblem": "problems",
    "Ingress": "ingress",
    "LoggedEvent": "admin",
    "MemoryRateLimiter": "guard",
    "Problem": "admin",
    "PurgeResult": "admin",
    "RateLimiter": "guard",
    "ReplayRequest": "admin",
    "ReplayResult": "admin",
    "RequestReply": "ingress",
    "Rule": "guard",
    "StateRateLimiter": "guard",
    "StateStatus": "admin",
    "Token": "auth",
    "TokenStore": "auth",
    "admin_router": "admin",
    "asgi_headers": "problems",
    "body_of": "problems",
    "bounded_protocol": "limits",
    "check_attributes": "ingress",
    "classify": "guard",
    "create_app": "app",
    "from_exception": "problems",
    "function_namespace_lookup": "guard",
    "functions_router": "direct",
    "hash_token": "auth",
    "load_tokens": "auth",
    "new_token": "auth",
    "not_ready": "problems",
    "parse_request": "ingress",
    "problem_response": "app",
    "read_body": "asgi",
    "send_event": "ingress",
    "send_problem": "asgi",
    "serve": "server",
    "state_of": "app",
    "summary": "server",
    "tenant_of": "asgi",
    "verify_github_signature": "webhooks",
    "webhooks_router": "webhooks",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports(__name__, _EXPORTS)
