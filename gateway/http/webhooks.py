"""CI webhooks in: GitHub, GitLab and Tekton events become CloudEvents and CDEvents.

Each webhook is verified first (GitHub: HMAC-SHA256 of the raw body in `X-Hub-Signature-256`;
GitLab: the shared `X-Gitlab-Token`; Tekton, whose `config-events` sink cannot sign: a shared
token in `?token=` or a bearer header), all compared in constant time. An endpoint with no secret
configured refuses (403) unless `CEMESH_ALLOW_UNSIGNED_WEBHOOKS` is set. Then the payload is
translated (cdevents/), and the raw event and its CDEvents are published together through the
normal ingress path (dedup, listeners), with ids derived from the delivery id so a redelivered
webhook is a duplicate, not a new event. The 202 body lists what was published.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from brokers.codec import from_http
from brokers.event import Event, json_loads
from brokers.knative import ingress_stamp, now_rfc3339
from cdevents import PayloadError, Translation
from cdevents import github as github_translator
from cdevents import gitlab as gitlab_translator
from cdevents import tekton as tekton_translator
from gateway.http.asgi import read_body
from gateway.http.ingress import Ingress
from gateway.http.problems import HTTPProblem, from_exception

if TYPE_CHECKING:
    from gateway.mesh import Mesh

ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Published: the events are listed"}
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The payload does not parse"},
    401: {"description": "Missing or wrong signature/token"},
    403: {"description": "No secret configured for this endpoint"},
}


def webhooks_router(get_mesh: Callable[[], Mesh], ingress: Ingress) -> APIRouter:
    router = APIRouter(prefix="/webhooks", tags=["webhooks"])

    @router.post("/github", summary="GitHub webhook", responses={**ACCEPTED, **ERRORS})
    async def github(request: Request) -> JSONResponse:
        mesh = get_mesh()
        body = await _body(request, mesh)
        secret = mesh.settings.github_secret
        _require_secret(secret, mesh, "CEMESH_GITHUB_SECRET")
        if secret:
            verify_github_signature(secret, body, request.headers.get("x-hub-signature-256"))
        event_name = _header(request, "x-github-event")
        delivery = _header(request, "x-github-delivery")
        payload = _json(body)
        return await _publish(
            mesh, ingress, lambda: github_translator.translate(event_name, delivery, payload)
        )

    @router.post("/gitlab", summary="GitLab webhook", responses={**ACCEPTED, **ERRORS})
    async def gitlab(request: Request) -> JSONResponse:
        mesh = get_mesh()
        body = await _body(request, mesh)
        token = mesh.settings.gitlab_token
        _require_secret(token, mesh, "CEMESH_GITLAB_TOKEN")
        if token:
            _same(token, request.headers.get("x-gitlab-token"), "x-gitlab-token")
        event_name = _header(request, "x-gitlab-event")
        key = request.headers.get("idempotency-key")
        payload = _json(body)
        return await _publish(
            mesh, ingress, lambda: gitlab_translator.translate(event_name, key, payload)
        )

    @router.post(
        "/tekton",
        summary="Tekton CloudEvents (config-events sink)",
        responses={**ACCEPTED, **ERRORS},
    )
    async def tekton(request: Request) -> JSONResponse:
        mesh = get_mesh()
        body = await _body(request, mesh)
        token = mesh.settings.tekton_token
        _require_secret(token, mesh, "CEMESH_TEKTON_TOKEN")
        if token:
            presented = request.query_params.get("token")
            auth = request.headers.get("authorization", "")
            if presented is None and auth.lower().startswith("bearer "):
                presented = auth[7:].strip()
            _same(token, presented, "token")
        headers = {k.lower(): v for k, v in request.headers.items()}
        _, events = from_http(headers, body)
        if len(events) != 1:
            raise HTTPProblem(
                400, "One Event Expected", "Tekton sends one event per request", field="body"
            )
        return await _publish(mesh, ingress, lambda: tekton_translator.translate(events[0]))

    return router


def verify_github_signature(secret: str, body: bytes, header: str | None) -> None:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, constant time."""
    if not header:
        raise _unauthorized("the X-Hub-Signature-256 header is missing", "x-hub-signature-256")
    algorithm, _, signature = header.partition("=")
    if algorithm != "sha256":
        raise _unauthorized("X-Hub-Signature-256 must start with 'sha256='", "x-hub-signature-256")
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise _unauthorized("the signature does not match the body", "x-hub-signature-256")


def _same(expected: str, presented: str | None, field: str) -> None:
    if presented is None:
        raise _unauthorized(f"the {field} is missing", field)
    if not hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8")):
        raise _unauthorized(f"the {field} is wrong", field)


def _unauthorized(detail: str, field: str) -> HTTPProblem:
    return HTTPProblem(401, "Unauthorized", detail, field=field, slug="bad-signature")


def _require_secret(secret: str | None, mesh: Mesh, variable: str) -> None:
    if not secret and not mesh.settings.allow_unsigned_webhooks:
        raise HTTPProblem(
            403,
            "Webhook Not Configured",
            f"no secret is configured ({variable}); set it, or allow unsigned webhooks with "
            "CEMESH_ALLOW_UNSIGNED_WEBHOOKS=true",
            slug="webhook-not-configured",
        )


async def _body(request: Request, mesh: Mesh) -> bytes:
    """The body, refused (413) as soon as it is over the batch limit while it streams in, and
    408 when it is too slow: nothing unauthenticated is buffered beyond the limit."""
    settings = mesh.settings
    return await read_body(
        request.scope, request.receive, settings.max_batch_bytes, settings.body_timeout
    )


def _header(request: Request, name: str) -> str:
    value = request.headers.get(name)
    if not value:
        raise HTTPProblem(400, "Missing Header", f"the {name} header is required", field=name)
    return value


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json_loads(body)  # orjson: nesting beyond 1,024 is a ValueError, not a crash
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPProblem(
            400, "Invalid Payload", f"the body is not JSON: {exc}", field="body"
        ) from None
    if not isinstance(payload, dict):
        raise HTTPProblem(400, "Invalid Payload", "the body must be a JSON object", field="body")
    return payload


async def _publish(
    mesh: Mesh, ingress: Ingress, translate: Callable[[], Translation]
) -> JSONResponse:
    try:
        translation = translate()
    except PayloadError as exc:
        raise from_exception(exc) from None
    arrival = now_rfc3339()
    events: list[Event] = [ingress_stamp(e, arrival) for e in translation.events]
    key = mesh.settings.webhook_broker
    await ingress.publish(mesh, key, events)
    published = [{"id": e.id, "type": e.type, "source": e.source} for e in events]
    return JSONResponse({"broker": key, "published": published}, status_code=202)
