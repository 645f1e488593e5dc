"""Direct function calls: `POST /functions/{name}` calls one function synchronously and returns
its answer, without a broker in between (for debugging, and for callers that want the answer).

The body is a CloudEvent in any HTTP mode, or plain JSON with `?type=` (and optionally
`?source=`, `?subject=`), which becomes a CloudEvent with a fresh id, `source`
`/cemesh/functions/<name>` and `datacontenttype: application/json`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from brokers.codec import from_http, media_type
from brokers.delivery import Destination
from brokers.errors import DeliveryError
from brokers.event import Event, json_loads
from brokers.knative import ingress_stamp
from brokers.transport import delivery_request
from gateway.http.problems import HTTPProblem, from_exception

if TYPE_CHECKING:
    from gateway.mesh import Mesh

PASS_HEADERS = ("content-type", "retry-after")


def functions_router(get_mesh: Callable[[], Mesh]) -> APIRouter:
    router = APIRouter(tags=["functions"])

    @router.post(
        "/functions/{name}",
        summary="Call a function synchronously and return its reply",
        responses={404: {"description": "Unknown function"}, 400: {"description": "Bad input"}},
    )
    async def call_function(
        name: str,
        request: Request,
        type: str | None = Query(None, description="CloudEvent type for a plain JSON body"),
        source: str | None = Query(None, description="CloudEvent source for a plain JSON body"),
        subject: str | None = Query(None, description="CloudEvent subject for a plain JSON body"),
        timeout: float = Query(30.0, gt=0, le=300, description="Seconds to wait for the function"),
    ) -> Response:
        mesh = get_mesh()
        if not any(p.name == name for p in mesh.loaded.functions):
            raise HTTPProblem(
                404, "Unknown Function", f"function '{name}' does not exist", field="name"
            )
        body = await request.body()
        if len(body) > mesh.settings.max_body_bytes:
            raise HTTPProblem(
                413, "Content Too Large", "the request body is too large", field="body"
            )
        headers = {k.lower(): v for k, v in request.headers.items()}
        event = _event_of(name, headers, body, type, source, subject)
        out_headers, out_body = delivery_request(ingress_stamp(event))
        try:
            answer = await mesh.transport.post(
                Destination(function=name), out_headers, out_body, timeout
            )
        except DeliveryError as exc:  # 504 on a timeout, 502 when unreachable
            raise from_exception(exc) from None
        passed = {
            k: v for k, v in answer.headers.items() if k.startswith("ce-") or k in PASS_HEADERS
        }
        return Response(answer.body, answer.status, headers=passed)

    return router


def _event_of(
    name: str,
    headers: dict[str, str],
    body: bytes,
    type_: str | None,
    source: str | None,
    subject: str | None,
) -> Event:
    content_type = headers.get("content-type")
    if "ce-specversion" in headers or media_type(content_type).startswith(
        "application/cloudevents"
    ):
        mode, events = from_http(headers, body)
        if mode == "batch" or len(events) != 1:
            raise HTTPProblem(
                400, "One Event Expected", "a function call takes one event", field="body"
            )
        return events[0]
    if not type_:
        raise HTTPProblem(
            400, "Not A CloudEvent", "send a CloudEvent, or a JSON body with ?type=", field="type"
        )
    try:
        json_loads(body or b"null")  # orjson: too deep is a ValueError, not a RecursionError
    except ValueError as exc:
        raise HTTPProblem(
            400, "Invalid JSON", f"the body is not JSON: {exc}", field="body"
        ) from None
    attributes: dict[str, object] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": type_,
        "source": source or f"/cemesh/functions/{name}",
        "datacontenttype": "application/json",
    }
    if subject:
        attributes["subject"] = subject
    return Event.create(attributes, body or None)
