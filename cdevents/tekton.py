"""Tekton's CloudEvents as CDEvents (pure: the gateway receives, this module maps).

Tekton emits `dev.tekton.event.{taskrun,pipelinerun}.<state>.v1` with the run object in
`data.taskRun` / `data.pipelineRun`, unordered and possibly more than once. The event itself is
passed through unchanged as the raw event; the mapping:

| Tekton event                          | CDEvent (subject id `<namespace>/<name>`)         |
|---------------------------------------|---------------------------------------------------|
| pipelinerun.queued / started          | pipelinerun.queued / started                      |
| pipelinerun.successful / failed       | pipelinerun.finished with `outcome`               |
| taskrun.started                       | taskrun.started                                   |
| taskrun.successful / failed           | taskrun.finished with `outcome`                   |
| *.running, *.unknown, taskrun.queued, customrun.* | raw only: not a start or an end       |

`outcome` comes from the Succeeded condition: status True → success; else its reason:
cancellations (Cancelled, PipelineRunCancelled, TaskRunCancelled, CancelledRunFinally,
StoppedRunFinally) → cancel, failures of the work itself (Failed, timeouts, FailureIgnored) →
failure, anything else (CouldntGetPipeline, InvalidParamValue, validation errors, ...) → error,
because then the run could not do its work at all. `errors` carries the condition's message.

Ids: Tekton mints a new event id every time it (re)sends an event, so ids derived from it
would not make duplicates collapse. A mapped CDEvent's id is a uuid5 of the run's uid and the
CDEvent type (one `pipelinerun.started` per run), falling back to the Tekton event id when the
run has no uid.

Links: a run created by cemesh's tekton-trigger function carries the labels `CHAIN_LABEL`
(the chain id) and `EVENT_LABEL` (the id of the CDEvent that caused it). Its CDEvents then get
that `chainId` and two embedded links to the causing event, RELATION (kind TRIGGER) and PATH,
so a pipeline's events lead back to the change that started it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, TypedDict, cast

from brokers.event import Event
from cdevents import CHAIN_LABEL, EVENT_LABEL, build
from cdevents.binding import Fields, Translation, derived_id, to_cloudevent
from cdevents.errors import PayloadError, ValidationError
from cdevents.events import (
    CDEvent,
    PipelineRun,
    PipelineRunFinished,
    PipelineRunStarted,
    TaskRun,
    TaskRunFinished,
)
from cdevents.shapes import EmbeddedLink, Outcome

QUEUED_ANNOTATION: Final = "cemesh.dev/queued-id"
"""On a run made by tekton-trigger: the id of the `pipelinerun.queued` CDEvent it replied."""
TYPE_PREFIX: Final = "dev.tekton.event."
DEFAULT_API_URL: Final = "https://kubernetes.default.svc"
CANCELLED: Final = frozenset(
    {
        "Cancelled",
        "PipelineRunCancelled",
        "TaskRunCancelled",
        "CancelledRunFinally",
        "StoppedRunFinally",
    }
)
FAILED: Final = frozenset({"Failed", "PipelineRunTimeout", "TaskRunTimeout", "FailureIgnored"})
_TYPE: Final = re.compile(r"dev\.tekton\.event\.(taskrun|pipelinerun)\.([a-z]+)\.v1")


def outcome(status: str, reason: str | None) -> Outcome:
    """The CDEvents outcome of a finished run's Succeeded condition."""
    if status == "True":
        return "success"
    if reason in CANCELLED:
        return "cancel"
    return "failure" if reason in FAILED else "error"


def translate(event: Event, *, api_url: str = DEFAULT_API_URL) -> Translation:
    """Tekton's event as the raw event, plus the CDEvent it maps to (if any).

    `api_url` is the base of the run URIs put in the CDEvents (the in-cluster API server by
    default). Raises `PayloadError` when a run event's data cannot be read.
    """
    if not event.type.startswith(TYPE_PREFIX):
        raise PayloadError(f"not a Tekton event type: {event.type!r}", field="type")
    match = _TYPE.fullmatch(event.type)
    if match is None:
        return Translation(event)
    kind, state = match[1], match[2]
    try:
        data = event.json()
    except ValueError as exc:
        raise PayloadError(f"the data of {event.type} is not JSON", field="data") from exc
    key = "pipelineRun" if kind == "pipelinerun" else "taskRun"
    run = Fields(data).node(key)
    try:
        mapped = _map(kind, state, _Run(run, event, api_url))
    except ValidationError as exc:
        raise PayloadError(f"{event.type} maps to an invalid CDEvent: {exc}") from exc
    return Translation(event, tuple(to_cloudevent(cdevent) for cdevent in mapped))


class _Common(TypedDict):
    source: str
    subject_id: str
    id: str
    chain_id: str | None
    links: Sequence[EmbeddedLink] | None


class _Run:
    """One run object from Tekton's event, and what its CDEvents share."""

    def __init__(self, run: Fields, event: Event, api_url: str) -> None:
        self.run, self.event = run, event
        self.name, self.namespace = run.text("metadata.name"), run.text("metadata.namespace")
        self.api_url = api_url.rstrip("/")

    def label(self, name: str) -> str | None:
        """An annotation of that name, else the label: tekton-trigger keeps exact values in
        annotations because label values must be short and plain (it sanitizes the labels)."""
        for where in ("metadata.annotations", "metadata.labels"):
            found = self.run.value(where)
            value = found.get(name) if isinstance(found, dict) else None
            if isinstance(value, str) and value:
                return value
        return None

    def common(self, cdevent: str) -> _Common:
        uid = self.run.maybe_text("metadata.uid")
        key = ("tekton", uid, cdevent) if uid else (self.event.source, self.event.id, cdevent)
        cause = self.label(EVENT_LABEL)
        return {
            "source": self.event.source,
            "subject_id": f"{self.namespace}/{self.name}",
            "id": derived_id(*key),
            "chain_id": self.label(CHAIN_LABEL),
            "links": [build.relation_link(cause), build.path_link(cause)] if cause else None,
        }

    def uri(self, plural: str) -> str:
        """The run's URI on the Kubernetes API (`plural`: pipelineruns or taskruns)."""
        return f"{self.api_url}/apis/tekton.dev/v1/namespaces/{self.namespace}/{plural}/{self.name}"

    def condition(self) -> tuple[str, str | None, str | None]:
        """Status, reason and message of the Succeeded condition."""
        for condition in self.run.nodes("status.conditions"):
            if condition.maybe_text("type") == "Succeeded":
                status = condition.text("status")
                return status, condition.maybe_text("reason"), condition.maybe_text("message")
        where = self.run.where("status.conditions")
        raise PayloadError(f"a finished run has no Succeeded condition in {where}", field=where)

    def time(self, path: str) -> str | None:
        return self.run.time(path) or self.event.time


def _map(kind: str, state: str, run: _Run) -> list[CDEvent]:
    if kind == "pipelinerun":
        return _pipelinerun(state, run)
    return _taskrun(state, run)


def _pipelinerun(state: str, run: _Run) -> list[CDEvent]:
    name = (
        run.label("tekton.dev/pipeline") or run.run.maybe_text("spec.pipelineRef.name") or run.name
    )
    content: PipelineRunStarted = {"pipelineName": name, "uri": run.uri("pipelineruns")}
    if state == "queued":
        queued: PipelineRun = {"pipelineName": name, "uri": content["uri"]}
        common, when = run.common("pipelinerun.queued"), run.time("metadata.creationTimestamp")
        # tekton-trigger already announced this run as queued: reuse its id so the two
        # announcements are one event to the broker's deduplication.
        common["id"] = run.label(QUEUED_ANNOTATION) or common["id"]
        return [build.pipelinerun_queued(**common, content=queued, timestamp=when)]
    if state == "started":
        common, when = run.common("pipelinerun.started"), run.time("status.startTime")
        return [build.pipelinerun_started(**common, content=content, timestamp=when)]
    if state in ("successful", "failed"):
        finished = cast(PipelineRunFinished, dict(content))
        _finish(finished, run)
        common, when = run.common("pipelinerun.finished"), run.time("status.completionTime")
        return [build.pipelinerun_finished(**common, content=finished, timestamp=when)]
    return []


def _taskrun(state: str, run: _Run) -> list[CDEvent]:
    content: TaskRun = {
        "taskName": run.label("tekton.dev/task")
        or run.run.maybe_text("spec.taskRef.name")
        or run.label("tekton.dev/pipelineTask")
        or run.name,
        "uri": run.uri("taskruns"),
    }
    if pipeline_run := run.label("tekton.dev/pipelineRun"):
        content["pipelineRun"] = {"id": f"{run.namespace}/{pipeline_run}"}
    if state == "started":
        common, when = run.common("taskrun.started"), run.time("status.startTime")
        return [build.taskrun_started(**common, content=content, timestamp=when)]
    if state in ("successful", "failed"):
        finished = cast(TaskRunFinished, dict(content))
        _finish(finished, run)
        common, when = run.common("taskrun.finished"), run.time("status.completionTime")
        return [build.taskrun_finished(**common, content=finished, timestamp=when)]
    return []


def _finish(content: PipelineRunFinished | TaskRunFinished, run: _Run) -> None:
    status, reason, message = run.condition()
    content["outcome"] = outcome(status, reason)
    if content["outcome"] != "success":
        content["errors"] = message or reason or "the run did not succeed"
