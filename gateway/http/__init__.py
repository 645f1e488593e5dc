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
    "BrokerInfo": "admin_models",
    "DeadLetterList": "admin_models",
    "DeadLetterOut": "admin_models",
    "DlqReplayRequest": "admin_models",
    "DlqReplayResult": "admin_models",
    "ErrorInfo": "admin_models",
    "EventPage": "admin_models",
    "Guard": "guard",
    "HTTPProblem": "problems",
    "Ingress": "ingress",
    "LoggedEvent": "admin_models",
    "MemoryRateLimiter": "guard",
    "Problem": "admin_models",
    "PurgeResult": "admin_models",
    "RateLimiter": "guard",
    "ReplayRequest": "admin_models",
    "ReplayResult": "admin_models",
    "RequestReply": "ingress",
    "Rule": "guard",
    "StateRateLimiter": "guard",
    "StateStatus": "admin_models",
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
