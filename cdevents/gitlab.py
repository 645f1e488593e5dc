"""GitLab webhooks as CloudEvents and CDEvents (pure: no HTTP, no token check here).

Every delivery becomes a raw CloudEvent `com.gitlab.<event>`, where `<event>` is the
X-Gitlab-Event header in snake case without its ` Hook` suffix (`Merge Request Hook` →
`com.gitlab.merge_request`), source = the project's web_url. Its id is the `Idempotency-Key`
header (stable across GitLab's retries); without one it is a uuid5 of the payload's canonical
JSON, so a resent payload still gets the same id. Mapped CDEvents get ids derived from it:

| X-Gitlab-Event, state                          | CDEvent (subject id)                       |
|------------------------------------------------|--------------------------------------------|
| Merge Request Hook action open                 | change.created (MR iid)                    |
| Merge Request Hook action update, reopen       | change.updated                             |
| Merge Request Hook action merge / close        | change.merged / change.abandoned           |
| Merge Request Hook action approval             | change.reviewed                            |
| Push Hook, `before` all zeros, refs/heads/*    | branch.created (branch name)               |
| Push Hook, `after` all zeros, refs/heads/*     | branch.deleted (branch name)               |
| Pipeline Hook status pending / running         | pipelinerun.queued / started (pipeline id) |
| Pipeline Hook status success, failed, canceled | pipelinerun.finished                       |
| Job Hook build_status running                  | taskrun.started (job id)                   |
| Job Hook build_status success, failed, canceled| taskrun.finished                           |
| Release Hook action create                     | artifact.published (`pkg:generic/<path>@<tag>`) |
| Deployment Hook status success                 | service.deployed (project path)            |
| (Confidential) Issue Hook action open / close  | ticket.created / ticket.closed (issue iid) |
| (Confidential) Issue Hook action update, reopen| ticket.updated                             |

Outcomes: success→success, failed→failure, canceled→cancel.

Decisions:
- A plain push to an existing branch is published raw only (`com.gitlab.push`): no CDEvent
  means "commits landed on a branch" (see `cdevents.github`).
- Pipeline statuses created, waiting_for_resource, preparing, manual, scheduled and skipped,
  and job statuses other than the above, are raw only: they are not a run starting or ending.
- `approval` (one reviewer approved) maps to change.reviewed; `approved` (all approvals met)
  is a derived state and stays raw, so one approval is not reported twice.
- GitLab has no purl type; releases use `pkg:generic` with the project path as namespace.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypedDict, cast
from urllib.parse import urlsplit

from brokers.event import Event
from cdevents import build
from cdevents.binding import Fields, Translation, derived_id, raw_event, to_cloudevent
from cdevents.errors import PayloadError, ValidationError
from cdevents.events import (
    CDEvent,
    ChangeCreated,
    PipelineRun,
    PipelineRunFinished,
    RepositoryChange,
    ServiceArtifact,
    TaskRun,
    TaskRunFinished,
    Ticket,
    TicketClosed,
    TicketCreated,
    TicketUpdated,
)
from cdevents.shapes import Outcome, Reference

DEFAULT_SOURCE: Final = "https://gitlab.com"
ZERO_SHA: Final = "0" * 40
OUTCOMES: Final[dict[str, Outcome]] = {
    "success": "success",
    "failed": "failure",
    "canceled": "cancel",
}
_FULL_SHA: Final = re.compile(r"[0-9a-f]{40}")


def event_kind(event_name: str) -> str:
    """`Merge Request Hook` → `merge_request`: the last part of the raw event's type."""
    name = event_name.strip().removesuffix(" Hook").removesuffix(" hook")
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def translate(event_name: str, idempotency_key: str | None, payload: dict[str, Any]) -> Translation:
    """The raw event and mapped CDEvents of one GitLab delivery.

    Raises `PayloadError` naming the header or field when the delivery cannot be read.
    """
    kind = event_kind(event_name or "")
    if not kind:
        raise PayloadError("the X-Gitlab-Event header is missing", field="X-Gitlab-Event")
    fields = Fields(payload)
    source = (
        fields.maybe_text("project.web_url")
        or fields.maybe_text("repository.homepage")
        or DEFAULT_SOURCE
    )
    raw_id = idempotency_key or derived_id("gitlab", _digest(payload))
    raw = raw_event(id=raw_id, source=source, type=f"com.gitlab.{kind}", payload=payload)
    handler = _HANDLERS.get(kind)
    if handler is None:
        return Translation(raw)
    try:
        mapped = handler(_Delivery(fields, source, raw))
    except ValidationError as exc:
        raise PayloadError(f"{raw.type} maps to an invalid CDEvent: {exc}") from exc
    return Translation(raw, tuple(to_cloudevent(event) for event in mapped))


def _digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class _Common(TypedDict):
    source: str
    subject_id: str
    id: str


@dataclass(frozen=True, slots=True)
class _Delivery:
    p: Fields
    source: str
    raw: Event

    def common(self, subject_id: str) -> _Common:
        mapped_id = derived_id(self.raw.source, self.raw.id, "0")
        return {"source": self.source, "subject_id": subject_id, "id": mapped_id}

    def web_url(self) -> str:
        """The project's web URL (older job hooks have only `repository.homepage`)."""
        url = self.p.maybe_text("project.web_url") or self.p.maybe_text("repository.homepage")
        return url or self.p.text("project.web_url")  # raises, naming the modern field

    def path(self) -> str:
        return self.p.text("project.path_with_namespace")

    def repository(self) -> Reference:
        url = urlsplit(self.web_url())
        return {"id": self.path(), "source": f"{url.scheme}://{url.netloc}"}


def _merge_request(d: _Delivery) -> list[CDEvent]:
    mr = d.p.node("object_attributes")
    action = mr.maybe_text("action") or ""
    common = d.common(mr.ident("iid"))
    content: RepositoryChange = {"repository": d.repository()}
    when = mr.time("updated_at")
    if action == "open":
        created: ChangeCreated = {"repository": d.repository()}
        if title := mr.maybe_text("title"):
            created["description"] = title
        return [build.change_created(**common, content=created, timestamp=mr.time("created_at"))]
    if action in ("update", "reopen"):
        return [build.change_updated(**common, content=content, timestamp=when)]
    if action == "merge":
        return [build.change_merged(**common, content=content, timestamp=when)]
    if action == "close":
        return [build.change_abandoned(**common, content=content, timestamp=when)]
    if action == "approval":
        return [build.change_reviewed(**common, content=content, timestamp=when)]
    return []


def _push(d: _Delivery) -> list[CDEvent]:
    ref = d.p.text("ref")
    if not ref.startswith("refs/heads/"):
        return []
    common = d.common(ref.removeprefix("refs/heads/"))
    content: RepositoryChange = {"repository": d.repository()}
    if d.p.text("before") == ZERO_SHA:
        return [build.branch_created(**common, content=content)]
    if d.p.text("after") == ZERO_SHA:
        return [build.branch_deleted(**common, content=content)]
    return []  # commits pushed to an existing branch: raw only (module docstring)


def _pipeline(d: _Delivery) -> list[CDEvent]:
    run = d.p.node("object_attributes")
    run_id, status = run.ident("id"), run.text("status")
    common = d.common(run_id)
    name = run.maybe_text("name") or d.path()
    uri = run.maybe_text("url") or f"{d.web_url()}/-/pipelines/{run_id}"
    if status == "pending":
        queued: PipelineRun = {"pipelineName": name, "uri": uri}
        return [
            build.pipelinerun_queued(**common, content=queued, timestamp=run.time("created_at"))
        ]
    if status == "running":
        return [build.pipelinerun_started(**common, content={"pipelineName": name, "uri": uri})]
    if status in OUTCOMES:
        finished: PipelineRunFinished = {
            "pipelineName": name,
            "uri": uri,
            "outcome": OUTCOMES[status],
        }
        failed = [
            job.text("name") for job in d.p.nodes("builds") if job.value("status") == "failed"
        ]
        if status != "success":
            finished["errors"] = f"pipeline {status}" + (
                f"; failed jobs: {', '.join(sorted(failed))}" if failed else ""
            )
        when = run.time("finished_at")
        return [build.pipelinerun_finished(**common, content=finished, timestamp=when)]
    return []


def _job(d: _Delivery) -> list[CDEvent]:
    job_id, status = d.p.ident("build_id"), d.p.text("build_status")
    common = d.common(job_id)
    started: TaskRun = {
        "taskName": d.p.text("build_name"),
        "uri": f"{d.web_url()}/-/jobs/{job_id}",
        "pipelineRun": {"id": d.p.ident("pipeline_id"), "source": d.source},
    }
    if status == "running":
        when = d.p.time("build_started_at")
        return [build.taskrun_started(**common, content=started, timestamp=when)]
    if status in OUTCOMES:
        finished = cast(TaskRunFinished, dict(started))
        finished["outcome"] = OUTCOMES[status]
        if status != "success":
            reason = d.p.maybe_text("build_failure_reason")
            finished["errors"] = f"job {status}" + (f": {reason}" if reason else "")
        when = d.p.time("build_finished_at")
        return [build.taskrun_finished(**common, content=finished, timestamp=when)]
    return []


def _release(d: _Delivery) -> list[CDEvent]:
    if d.p.maybe_text("action") != "create":
        return []
    namespace, _, name = d.path().rpartition("/")
    subject = build.purl("generic", namespace, name, d.p.text("tag"))
    when = d.p.time("released_at") or d.p.time("created_at")
    return [build.artifact_published(**d.common(subject), content={}, timestamp=when)]


def _deployment(d: _Delivery) -> list[CDEvent]:
    if d.p.text("status") != "success":
        return []
    commit = (d.p.maybe_text("commit_url") or "").rsplit("/", 1)[-1]
    sha = commit if _FULL_SHA.fullmatch(commit) else d.p.text("short_sha")
    namespace, _, name = d.path().rpartition("/")
    content: ServiceArtifact = {
        "environment": {"id": d.p.text("environment")},
        "artifactId": build.purl("generic", namespace, name, sha),
    }
    when = d.p.time("status_changed_at")
    return [build.service_deployed(**d.common(d.path()), content=content, timestamp=when)]


def _issue(d: _Delivery) -> list[CDEvent]:
    issue = d.p.node("object_attributes")
    action = issue.maybe_text("action") or ""
    common = d.common(issue.ident("iid"))
    uri, summary = issue.text("url"), issue.text("title")
    user = d.p.maybe_text("user.username")
    if action == "open":
        created: TicketCreated = {
            "uri": uri,
            "summary": summary,
            "creator": d.p.text("user.username"),
        }
        _ticket_details(created, d.p, issue)
        return [build.ticket_created(**common, content=created, timestamp=issue.time("created_at"))]
    if action == "close":
        duplicate = issue.has("duplicated_to_id")
        closed: TicketClosed = {
            "uri": uri,
            "summary": summary,
            "resolution": "duplicate" if duplicate else "completed",
        }
        if user:
            closed["updatedBy"] = user
        _ticket_details(closed, d.p, issue)
        when = issue.time("closed_at") or issue.time("updated_at")
        return [build.ticket_closed(**common, content=closed, timestamp=when)]
    if action in ("update", "reopen"):
        updated: TicketUpdated = {"uri": uri, "summary": summary}
        if user:
            updated["updatedBy"] = user
        _ticket_details(updated, d.p, issue)
        return [build.ticket_updated(**common, content=updated, timestamp=issue.time("updated_at"))]
    return []


def _ticket_details(ticket: Ticket, p: Fields, issue: Fields) -> None:
    ticket["assignees"] = [user.text("username") for user in p.nodes("assignees")]
    labels = p.nodes("labels") or issue.nodes("labels")
    ticket["labels"] = [label.text("title") for label in labels]
    if kind := issue.maybe_text("type"):
        ticket["ticketType"] = kind.lower()


_HANDLERS: Final[dict[str, Callable[[_Delivery], list[CDEvent]]]] = {
    "merge_request": _merge_request,
    "push": _push,
    "pipeline": _pipeline,
    "job": _job,
    "release": _release,
    "deployment": _deployment,
    "issue": _issue,
    "confidential_issue": _issue,
}
