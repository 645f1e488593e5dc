"""The gateway's front door: authentication, tenancy, rate limits and a concurrency bound.

A bare ASGI middleware so the hot ingress path pays a dictionary lookup, not a framework
dependency. Health, metrics, docs and webhooks (which carry their own signatures) stay open.
Requests are classified by the exact route that serves them, never by a path prefix, and the
gateway's own first path segments cannot be namespaces (`brokers.triggers.RESERVED_NAMESPACES`).
Rate limits are per token (token bucket; Redis-backed when the mesh has Redis state, so replicas
share them); a token without its own rate uses the mesh default, if any.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import parse_qs

from brokers.state import State
from gateway.http.asgi import TENANT_KEY, Receive, Scope, Send, send_problem
from gateway.http.auth import Token, TokenStore
from gateway.http.problems import HTTPProblem

OPEN_PATHS: Final = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/ui",
        # Webhooks carry their own signatures; exact routes, never a prefix (a namespace
        # called "webhooks" would otherwise publish without a token).
        "/webhooks/github",
        "/webhooks/gitlab",
        "/webhooks/tekton",
    }
)
ADMIN_PREFIXES: Final = ("/admin/", "/events/")
log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from gateway.mesh import Mesh


class RateLimiter(Protocol):
    async def allow(self, key: str, rate: float, burst: int) -> float:
        """0 when the request may go on, else the seconds to wait."""
        ...


class MemoryRateLimiter:
    """Token buckets in this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._clock = clock

    async def allow(self, key: str, rate: float, burst: int) -> float:
        now = self._clock()
        tokens, last = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate


class StateRateLimiter:
    """Per-token limits shared by every replica through the mesh's state (Redis).

    A fixed window of `burst / rate` seconds (at least 1) admitting `burst` requests: the same
    average rate as the token bucket, counted with one atomic INCR. On the memory state it
    defers to the in-process token bucket; when Redis is unreachable it lets requests through
    (with a warning): a limiter must not refuse traffic because it cannot count.
    """

    def __init__(self, get_state: Callable[[], State | None]) -> None:
        self._get_state = get_state
        self._local = MemoryRateLimiter()
        self._warned = 0.0

    async def allow(self, key: str, rate: float, burst: int) -> float:
        state = self._get_state()
        if state is None or state.backend != "redis":
            return await self._local.allow(key, rate, burst)
        window = max(1.0, burst / rate)
        now = time.time()
        index = int(now // window)
        try:
            count = await state.count("rate", key, str(index), window)
        except Exception as exc:  # StateUnavailable and friends: fail open
            if now - self._warned > 10:
                self._warned = now
                log.warning("rate limit not enforced, state unavailable: %s", exc)
            return 0.0
        if count <= burst:
            return 0.0
        return (index + 1) * window - now


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str  # open | publish | function | admin
    namespace: str = ""
    name: str = ""


def classify(method: str, path: str) -> Rule:
    if path in OPEN_PATHS:
        return Rule("open")
    if path.startswith(ADMIN_PREFIXES):
        return Rule("admin")
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "functions" and len(parts) == 2:
        return Rule("function", name=parts[1])
    if method == "POST" and not parts:
        return Rule("publish", "default", "default")
    if method == "POST" and (len(parts) == 2 or (len(parts) == 3 and parts[2] == "request")):
        return Rule("publish", parts[0], parts[1])
    return Rule("admin")


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials.strip() if scheme.lower() == "bearer" else None
    if scope.get("path", "").startswith("/events/"):  # EventSource cannot send headers
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values: list[str] = query.get("access_token", [])
        return values[0] if values else None
    return None


class Guard:
    """Admission: token, scope, rate, then concurrency, globally and per tenant.

    A tenant is the request's token (the namespace it targets, without tokens). A tenant may go
    past `tenant_concurrency` of the `max_concurrency` request slots only while a whole share is
    still free for the others, so a client that sends slow bodies or parks request-reply waits
    cannot take the last slots, and a lone tenant still has most of the bound.
    """

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        tokens: TokenStore,
        limiter: RateLimiter,
        max_concurrency: int,
        function_namespace: Callable[[str], str | None],
        default_rate: float | None = None,
        default_burst: int | None = None,
        tenant_concurrency: int | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.limiter = limiter
        self.max_concurrency = max_concurrency
        self.tenant_concurrency = tenant_concurrency or max(1, max_concurrency // 4)
        self.function_namespace = function_namespace
        self.default_rate = default_rate
        self.default_burst = default_burst
        self.inflight = 0
        self.by_tenant: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = classify(scope["method"], scope["path"])
        if rule.kind == "open":
            await self.app(scope, receive, send)
            return
        try:
            token = self._authorize(scope, rule)
            await self._rate_limit(token)
            tenant = self._tenant(rule, token)
            # A live stream stays open for minutes: it must not hold a request slot.
            streaming = scope["path"].startswith("/events/")
            if not streaming:
                self._check_room(tenant)
        except HTTPProblem as problem:
            await send_problem(send, problem, scope.get("path"))
            return
        scope.setdefault("state", {})[TENANT_KEY] = tenant
        if streaming:
            await self.app(scope, receive, send)
            return
        self.inflight += 1
        self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            left = self.by_tenant[tenant] - 1
            if left:
                self.by_tenant[tenant] = left
            else:
                del self.by_tenant[tenant]

    def _tenant(self, rule: Rule, token: Token | None) -> str:
        if token is not None:
            return f"token:{token.name}"
        if rule.kind == "publish":
            return f"namespace:{rule.namespace}"
        if rule.kind == "function":
            return f"namespace:{self.function_namespace(rule.name) or '?'}"
        return "admin"

    def _check_room(self, tenant: str) -> None:
        if self.inflight >= self.max_concurrency:
            detail = "too many concurrent requests; retry shortly"
        elif (
            self.by_tenant.get(tenant, 0) >= self.tenant_concurrency
            and self.inflight >= self.max_concurrency - self.tenant_concurrency
        ):  # beyond its share only while a whole share is still free for the others
            detail = (
                f"this client has {self.tenant_concurrency} requests in flight, its share; "
                "retry shortly"
            )
        else:
            return
        raise HTTPProblem(503, "Too Busy", detail, headers={"retry-after": "1"}, slug="too-busy")

    def _authorize(self, scope: Scope, rule: Rule) -> Token | None:
        if not self.tokens:
            return None
        presented = _bearer(scope)
        token = self.tokens.find(presented) if presented else None
        if token is None:
            raise HTTPProblem(
                401,
                "Unauthorized",
                "a valid bearer token is required",
                headers={"www-authenticate": 'Bearer realm="cemesh"'},
                field="authorization",
            )
        allowed = token.admin
        if rule.kind == "publish":
            allowed = allowed or token.may_publish(rule.namespace, rule.name)
        elif rule.kind == "function":
            namespace = self.function_namespace(rule.name)
            allowed = allowed or (namespace is not None and token.may_call(namespace, rule.name))
        if not allowed:
            what = f"{rule.namespace}/{rule.name}" if rule.kind == "publish" else rule.name
            raise HTTPProblem(
                403,
                "Forbidden",
                f"token '{token.name}' is not allowed to use {what or 'this path'}",
            )
        return token

    async def _rate_limit(self, token: Token | None) -> None:
        rate = (token.rate if token else None) or self.default_rate
        if rate is None:
            return
        burst = (token.burst if token else None) or self.default_burst or max(1, math.ceil(rate))
        key = token.name if token else "anonymous"
        wait = await self.limiter.allow(key, rate, burst)
        if wait > 0:
            raise HTTPProblem(
                429,
                "Too Many Requests",
                f"rate limit of {rate:g}/s exceeded",
                headers={"retry-after": str(max(1, math.ceil(wait)))},
                slug="rate-limited",
            )


def function_namespace_lookup(get_mesh: Callable[[], Mesh | None]) -> Callable[[str], str | None]:
    def lookup(name: str) -> str | None:
        mesh = get_mesh()
        project = next((p for p in mesh.loaded.functions if p.name == name), None) if mesh else None
        return project.namespace if project else None

    return lookup
