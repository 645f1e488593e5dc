"""The admin API (`/admin/...`): the event log, replay and dead letters of a running mesh.

Why an HTTP API rather than the CLI talking to Redis or RabbitMQ directly: the commands then
work the same on every broker and state backend (memory included, which only the running
process can see), go through the gateway's authentication (admin tokens), and the UI can use
the same endpoints. Every error is problem+json (RFC 9457) like the rest of the gateway; an
unreachable state backend is a 503 with Retry-After, never a hang.

Replay re-publishes logged events through `Broker.publish` with `cemeshreplay` (a new delivery
for the dedup marks) and, for one trigger only, `cemeshtarget` (see brokers.state). Replayed
events are not appended to the log again and do not go through ingress dedup.

The request and response bodies are in admin_models.py (the API's contract, from which the
OpenAPI schema is generated); this module is the router and what runs behind it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Query

from brokers.base import DeadLetter
from brokers.errors import BrokerError
from brokers.event import Event
from brokers.knative import ingress_stamp
from brokers.state import TARGET_EXTENSION, target_extensions
from brokers.state.base import LogEntry, StateUnavailable, check_bound, id_at, parse_id
from brokers.triggers import TriggerSpec
from gateway.http.admin_models import (
    BrokerInfo,
    DeadLetterList,
    DeadLetterOut,
    DlqReplayRequest,
    DlqReplayResult,
    ErrorInfo,
    EventPage,
    LoggedEvent,
    Problem,
    PurgeResult,
    ReplayRequest,
    ReplayResult,
    StateStatus,
)
from gateway.http.problems import PROBLEM_JSON, HTTPProblem, from_exception, not_ready

if TYPE_CHECKING:
    from gateway.mesh import Mesh

T = TypeVar("T")
PAGE: Final = 500
DLQ_SCAN: Final = 10_000
POLL: Final = 0.2
ERROR_EXTENSIONS: Final = ("knativeerrordest", "knativeerrorcode", "knativeerrordata")


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        400: "Invalid request",
        404: "Unknown broker or trigger",
        503: "State or broker unavailable (retry after)",
    }
    schema = {"schema": Problem.model_json_schema()}
    return {code: {"description": texts[code], "content": {PROBLEM_JSON: schema}} for code in codes}


def admin_router(get_mesh: Callable[[], Mesh]) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    def mesh_now() -> Mesh:
        try:
            return get_mesh()
        except LookupError:  # no mesh yet (KeyError is a LookupError)
            raise not_ready("the mesh is starting") from None

    @router.get("/state", summary="State backend, health and counters", response_model=StateStatus)
    async def state_status() -> StateStatus:
        mesh = mesh_now()
        ledger = mesh.ledger
        brokers = [
            BrokerInfo(broker=k, dedup_window=p.dedup_window, log_length=p.log_length)
            for k, p in sorted(ledger.policies.items())
        ]
        return StateStatus(
            backend=ledger.state.backend,
            prefix=ledger.state.prefix,
            healthy=ledger.state.healthy,
            counters=ledger.snapshot(),
            brokers=brokers,
        )

    @router.get(
        "/brokers/{namespace}/{name}/events",
        response_model=EventPage,
        summary="Recent events a broker accepted (its event log)",
        responses=_problems(400, 404, 503),
    )
    async def events(
        namespace: str,
        name: str,
        limit: int = Query(20, ge=1, le=1000, description="how many"),
        after: str | None = Query(None, description="only events logged after this id"),
        wait: float = Query(0, ge=0, le=30, description="with `after`: seconds to wait for one"),
    ) -> EventPage:
        mesh = mesh_now()
        key = _broker(mesh, namespace, name)
        state = mesh.ledger.state
        if after is None:
            entries = await _state(state.tail(key, limit))
            return _page(key, entries, None)
        start = "(" + _stream_id(after, "after")
        deadline = time.monotonic() + wait
        while True:
            entries = await _state(state.read(key, start, "+", limit))
            if entries or time.monotonic() >= deadline:
                return _page(key, entries, after)
            await asyncio.sleep(POLL)

    @router.post(
        "/brokers/{namespace}/{name}/replay",
        response_model=ReplayResult,
        summary="Re-publish logged events to all triggers, or to one",
        responses=_problems(400, 404, 503),
    )
    async def replay(namespace: str, name: str, body: ReplayRequest) -> ReplayResult:
        mesh = mesh_now()
        key = _broker(mesh, namespace, name)
        if body.since is not None and body.from_id is not None:
            raise HTTPProblem(400, "Invalid Request", "give since or from, not both", field="from")
        trigger = None
        if body.trigger:
            trigger = _trigger(mesh, *_owner(body.trigger, namespace))
            if trigger.broker_key != key:
                raise HTTPProblem(
                    400,
                    "Invalid Request",
                    f"trigger {trigger.key} is not on broker {key}",
                    field="trigger",
                )
        return await _replay(mesh, key, body, trigger)

    @router.get(
        "/triggers/{namespace}/{name}/dlq",
        response_model=DeadLetterList,
        summary="Dead letters kept for a trigger (no deadLetterSink), oldest first",
        responses=_problems(404, 503),
    )
    async def dlq_list(
        namespace: str,
        name: str,
        limit: int = Query(100, ge=1, le=DLQ_SCAN),
    ) -> DeadLetterList:
        mesh = mesh_now()
        trigger = _trigger(mesh, namespace, name)
        letters = await _broker_call(mesh.broker.dead_letters(trigger.key, limit))
        return DeadLetterList(
            trigger=trigger.key, count=len(letters), dead_letters=[_dead_letter(d) for d in letters]
        )

    @router.get(
        "/triggers/{namespace}/{name}/dlq/{id}",
        response_model=DeadLetterOut,
        summary="One dead letter",
        responses=_problems(404, 503),
    )
    async def dlq_show(namespace: str, name: str, id: str) -> DeadLetterOut:
        mesh = mesh_now()
        trigger = _trigger(mesh, namespace, name)
        letters = await _broker_call(mesh.broker.dead_letters(trigger.key, DLQ_SCAN))
        for letter in letters:
            if letter.id == id:
                return _dead_letter(letter)
        raise HTTPProblem(
            404,
            "Unknown Dead Letter",
            f"trigger {trigger.key} has no dead letter '{id}'",
            field="id",
        )

    @router.post(
        "/triggers/{namespace}/{name}/dlq/replay",
        response_model=DlqReplayResult,
        summary="Deliver dead letters again, to this trigger only, then remove them",
        responses=_problems(404, 503),
    )
    async def dlq_replay(namespace: str, name: str, body: DlqReplayRequest) -> DlqReplayResult:
        mesh = mesh_now()
        trigger = _trigger(mesh, namespace, name)
        letters = await _broker_call(mesh.broker.dead_letters(trigger.key, DLQ_SCAN))
        wanted = set(body.ids)
        chosen = [d for d in letters if not wanted or d.id in wanted]
        missing = sorted(wanted - {d.id for d in chosen})
        if not chosen:
            return DlqReplayResult(
                trigger=trigger.key, replayed=[], missing=missing, replay_id=None
            )
        replay_id = _replay_id()
        events = [_restamp(d.event, trigger.key, replay_id) for d in chosen]
        await _broker_call(mesh.broker.publish(trigger.broker_key, events))
        ids = [d.id for d in chosen]
        await _broker_call(mesh.broker.remove_dead_letters(trigger.key, ids))
        return DlqReplayResult(
            trigger=trigger.key, replayed=ids, missing=missing, replay_id=replay_id
        )

    @router.delete(
        "/triggers/{namespace}/{name}/dlq",
        response_model=PurgeResult,
        summary="Purge dead letters: the ones named by `id`, or all",
        responses=_problems(404, 503),
    )
    async def dlq_purge(
        namespace: str,
        name: str,
        id: Annotated[list[str] | None, Query(description="dead letters; none = all")] = None,
    ) -> PurgeResult:
        mesh = mesh_now()
        trigger = _trigger(mesh, namespace, name)
        purged = await _broker_call(mesh.broker.remove_dead_letters(trigger.key, id or []))
        return PurgeResult(trigger=trigger.key, purged=purged)

    return router


async def _replay(
    mesh: Mesh, key: str, body: ReplayRequest, trigger: TriggerSpec | None
) -> ReplayResult:
    state = mesh.ledger.state
    start = (
        _bound(body.from_id, "from")
        if body.from_id
        else (id_at(_utc(body.since)) if body.since else "-")
    )
    if body.until is not None:
        end = id_at(_utc(body.until), end=True)
    else:  # what is logged from now on is not part of this replay
        newest = await _state(state.tail(key, 1))
        end = newest[0].id if newest else "0-0"
    replay_id = None if body.dry_run else _replay_id()
    target = trigger.key if trigger else None
    matched = published = 0
    first = last = None
    pending: list[Event] = []
    cursor = start
    while True:
        entries = await _state(state.read(key, cursor, end, PAGE))
        for entry in entries:
            if body.limit is not None and matched >= body.limit:
                break
            event = entry.event
            if body.type is not None and event.type != body.type:
                continue
            if trigger is not None and not trigger.filter.matches(event):
                continue
            matched += 1
            first, last = first or entry.id, entry.id
            if replay_id is not None:
                pending.append(_restamp(event, target, replay_id))
        if len(pending) >= PAGE:
            published += await _publish(mesh, key, pending, published)
            pending = []
        if len(entries) < PAGE or (body.limit is not None and matched >= body.limit):
            break
        cursor = "(" + entries[-1].id
    if pending:
        published += await _publish(mesh, key, pending, published)
    return ReplayResult(
        broker=key,
        trigger=target,
        matched=matched,
        published=published,
        dry_run=body.dry_run,
        replay_id=replay_id,
        first=first,
        last=last,
    )


async def _publish(mesh: Mesh, key: str, events: list[Event], done: int) -> int:
    try:
        await mesh.broker.publish(key, events)
    except BrokerError as exc:
        problem = from_exception(exc)
        problem.detail = f"replay stopped after {done} events were published: {problem.detail}"
        raise problem from None
    return len(events)


def _restamp(event: Event, trigger: str | None, replay_id: str) -> Event:
    """A replayable copy: no error extensions, a new arrival time, the replay extensions."""
    attributes = {
        k: v
        for k, v in event.attributes.items()
        if k not in ERROR_EXTENSIONS and k != TARGET_EXTENSION
    }
    attributes.update(target_extensions(trigger, replay_id))
    return ingress_stamp(Event(attributes, event.data))


def _replay_id() -> str:
    return "r-" + uuid.uuid4().hex[:16]


def _page(key: str, entries: list[LogEntry], after: str | None) -> EventPage:
    items = [LoggedEvent(id=e.id, time=e.time, event=e.event.to_dict()) for e in entries]
    return EventPage(broker=key, events=items, last=entries[-1].id if entries else after)


def _dead_letter(letter: DeadLetter) -> DeadLetterOut:
    event = letter.event
    data = event.text("knativeerrordata")
    text = None
    if data is not None:
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            text = data
    error = ErrorInfo(
        destination=event.text("knativeerrordest"), code=event.text("knativeerrorcode"), data=text
    )
    return DeadLetterOut(id=letter.id, trigger=letter.trigger, error=error, event=event.to_dict())


def _broker(mesh: Mesh, namespace: str, name: str) -> str:
    key = f"{namespace}/{name}"
    if key not in mesh.config.brokers:
        raise HTTPProblem(404, "Unknown Broker", f"broker {key} does not exist")
    return key


def _trigger(mesh: Mesh, namespace: str, name: str) -> TriggerSpec:
    key = f"{namespace}/{name}"
    for trigger in mesh.config.triggers:
        if trigger.key == key:
            return trigger
    raise HTTPProblem(404, "Unknown Trigger", f"trigger {key} does not exist", field="trigger")


def _owner(text: str, namespace: str) -> tuple[str, str]:
    ns, sep, name = text.partition("/")
    return (ns, name) if sep else (namespace, text)


def _bound(text: str, field: str) -> str:
    try:
        return check_bound(text)
    except ValueError as exc:
        raise HTTPProblem(400, "Invalid Request", str(exc), field=field) from None


def _stream_id(text: str, field: str) -> str:
    try:
        parse_id(text)
    except ValueError as exc:
        raise HTTPProblem(400, "Invalid Request", str(exc), field=field) from None
    return text


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def _state(call: Awaitable[T]) -> T:
    try:
        return await call
    except StateUnavailable as exc:
        raise from_exception(exc) from None


async def _broker_call(call: Awaitable[T]) -> T:
    try:
        return await call
    except BrokerError as exc:
        raise from_exception(exc) from None
