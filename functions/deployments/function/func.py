"""deployments: which artifact runs in which environment, learnt from CDEvents.

Input (CDEvents 0.5.1 as CloudEvents, data = the whole CDEvent):
- `dev.cdevents.service.deployed.0.3.0`, `...upgraded.0.3.0`, `...rolledback.0.3.0`: service
  `subject.id` now runs `subject.content.artifactId` in `subject.content.environment.id`;
- `dev.cdevents.service.removed.0.3.0`: the service is gone from that environment.
These are acknowledged with 202 and no reply; a malformed one gets a 400 (not retried, so the
mesh keeps it as a dead letter).

Query: `com.example.deployments.query` with `{"environment": "prod"}` (or `{}` for all) is
answered with a `com.example.deployments.result` reply whose data is
`{"environment": "prod", "services": {"<service>": {"artifactId": ..., "since": ..., ...}}}`
(or `{"environments": {"<env>": {...}}}`).

State lives in Redis (REDIS_URL, keys under CEMESH_STATE_PREFIX) so replicas share it and it
survives restarts; without REDIS_URL it is kept in memory (see store.py).
"""

import asyncio
import json
import logging
import uuid
from datetime import datetime

from cloudevents.core.v1.event import CloudEvent

from .store import open_store

SERVICE_TYPES = {
    "dev.cdevents.service.deployed.0.3.0": "deployed",
    "dev.cdevents.service.upgraded.0.3.0": "upgraded",
    "dev.cdevents.service.rolledback.0.3.0": "rolledback",
    "dev.cdevents.service.removed.0.3.0": "removed",
}
QUERY_TYPE = "com.example.deployments.query"
RESULT_TYPE = "com.example.deployments.result"
SOURCE = "/functions/deployments"

log = logging.getLogger("deployments")


class BadEvent(ValueError):
    """The event cannot be used; answered with 400 (never retried)."""


def new():
    """Called once by the func-python runtime to create the function instance."""
    return Function()


class Function:
    def __init__(self):
        self.store = None
        self._closing = set()

    def start(self, cfg):
        """`cfg` is the environment: REDIS_URL and CEMESH_STATE_PREFIX choose the store."""
        self.store = open_store(cfg)

    def stop(self):
        store, self.store = self.store, None
        if store is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(store.close())
        except RuntimeError:
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def alive(self):
        return True, "alive"

    def ready(self):
        return True, "ready"

    async def handle(self, scope, receive, send):
        if self.store is None:
            self.start({})
        event = scope["event"]
        kind = event.get_type()
        try:
            if kind == QUERY_TYPE:
                await send(await self.answer(event))
                return
            if kind in SERVICE_TYPES:
                await self.record(SERVICE_TYPES[kind], _json(event.get_data()))
                await _respond(send, 202, b"")
                return
            raise BadEvent(f"unexpected event type {kind}")
        except BadEvent as exc:
            log.warning("event %s rejected: %s", event.get_id(), exc)
            await _respond(send, 400, str(exc).encode())

    async def record(self, action, cdevent):
        """Apply one service change; returns False when a newer change is already known."""
        try:
            context, subject = cdevent["context"], cdevent["subject"]
            content = subject.get("content") or {}
            service = subject["id"]
            timestamp = context["timestamp"]
            environment = (content.get("environment") or {}).get("id")
        except (KeyError, TypeError, AttributeError):
            raise BadEvent("data is not a CDEvent (context, subject.id, timestamp)") from None
        if not environment:
            raise BadEvent("subject.content.environment.id is required to track deployments")
        record = {
            "ms": _millis(timestamp),
            "since": timestamp,
            "action": action,
            "event": context.get("id"),
        }
        if action == "removed":
            record["removed"] = True
        else:
            artifact = content.get("artifactId")
            if not artifact:
                raise BadEvent(f"subject.content.artifactId is required for service.{action}")
            record["artifactId"] = artifact
        return await self.store.apply(environment, service, record)

    async def answer(self, event):
        query = _json(event.get_data()) if event.get_data() not in (None, b"", "") else {}
        if not isinstance(query, dict):
            raise BadEvent('a query is a JSON object such as {"environment": "prod"}')
        environment = query.get("environment")
        if environment:
            data = {
                "environment": environment,
                "services": await self.store.environment(environment),
            }
        else:
            data = {
                "environments": {
                    env: await self.store.environment(env)
                    for env in await self.store.environments()
                }
            }
        return CloudEvent(
            {
                "type": RESULT_TYPE,
                "source": SOURCE,
                "id": str(uuid.uuid4()),
                "subject": environment or "all",
                "datacontenttype": "application/json",
            },
            data,
        )


def _json(data):
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            raise BadEvent("data is not JSON") from None
    if data is None:
        raise BadEvent("the event has no data")
    return data


def _millis(timestamp):
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00").replace("z", "+00:00"))
    except (AttributeError, ValueError):
        raise BadEvent(f"context.timestamp '{timestamp}' is not RFC 3339") from None
    return int(when.timestamp() * 1000)


async def _respond(send, status, body):
    """A plain HTTP answer without an event (func-python's sender has `http`)."""
    raw = getattr(send, "http", None)
    if raw is None:
        return
    await raw(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await raw({"type": "http.response.body", "body": body})
