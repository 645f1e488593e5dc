"""What the function answers: a CDEvent `pipelinerun.queued`, or an error event.

The reply is a CDEvents 0.5.1 `dev.cdevents.pipelinerun.queued.0.3.0` carried as a CloudEvent
per the CDEvents binding (ce id/source/type copy the context, ce time is the timestamp, ce
subject is the subject id, data is the whole CDEvent as JSON). It is linked to the triggering
event (a PATH link from it and a RELATION link of kind TRIGGER to it) and continues its chain
(`chainId`). Its id is derived from the run's namespace and name and its timestamp is the
run's creationTimestamp, so a redelivered event gets the very same reply, which the broker's
deduplication drops.

`customData` says what happened: `{"dryRun": false, "pipelineRun": {namespace, name, uid}}`,
or in dry run `{"dryRun": true, "pipelineRun": <the whole object it would have created>}`.

Errors are answered like func-python's own (`dev.functions.error`, data `{"message": ...}`),
with `reason` and `status` added; the HTTP status is the error's (see errors.py).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Final

from cloudevents.core.v1.event import CloudEvent

from .errors import TriggerError
from .pipelinerun import Cause

QUEUED_TYPE: Final = "dev.cdevents.pipelinerun.queued.0.3.0"
SPEC_VERSION: Final = "0.5.1"
ERROR_TYPE: Final = "dev.functions.error"
ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://cemesh.dev/tekton-trigger")
MAX_MESSAGE: Final = 800
"""Knative keeps 1024 characters of an error body; the message goes first and is capped."""


def queued_id(namespace: str, name: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{namespace}/{name}/queued"))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def queued_cdevent(
    *,
    namespace: str,
    name: str,
    pipeline_name: str,
    cause: Cause,
    source: str,
    timestamp: str,
    uri: str | None,
    custom: Mapping[str, Any],
) -> dict[str, Any]:
    content: dict[str, Any] = {"pipelineName": pipeline_name}
    if uri:
        content["uri"] = uri
    return {
        "context": {
            "specversion": SPEC_VERSION,
            "id": queued_id(namespace, name),
            "source": source,
            "type": QUEUED_TYPE,
            "timestamp": timestamp,
            "chainId": cause.chain_id,
            "links": [
                {"linkType": "PATH", "from": {"contextId": cause.context_id}},
                {
                    "linkType": "RELATION",
                    "linkKind": "TRIGGER",
                    "target": {"contextId": cause.context_id},
                },
            ],
        },
        "subject": {"id": f"{namespace}/{name}", "content": content},
        "customData": dict(custom),
        "customDataContentType": "application/json",
    }


def as_cloudevent(cdevent: Mapping[str, Any]) -> CloudEvent:
    """A CDEvent as a CloudEvent, per the CDEvents CloudEvents binding."""
    context = cdevent["context"]
    stamp = dt.datetime.fromisoformat(str(context["timestamp"]).replace("Z", "+00:00"))
    return CloudEvent(
        {
            "specversion": "1.0",
            "id": context["id"],
            "source": context["source"],
            "type": context["type"],
            "time": stamp,
            "subject": cdevent["subject"]["id"],
            "datacontenttype": "application/json",
        },
        dict(cdevent),
    )


def error_event(error: TriggerError, source: str, cause_id: str | None) -> CloudEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": ERROR_TYPE,
        "datacontenttype": "application/json",
    }
    if cause_id:
        attributes["subject"] = cause_id
    message = error.message
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return CloudEvent(
        attributes, {"message": message, "reason": error.reason, "status": error.status}
    )
