"""GitHub webhooks as CloudEvents and CDEvents (pure: no HTTP, no signatures here).

Every delivery becomes a raw CloudEvent `com.github.<X-GitHub-Event>[.<action>]` whose id is
`X-GitHub-Delivery` (stable across redelivery) and whose source is the repository's html_url,
plus the CDEvents it maps to, with ids derived from the delivery id:

| GitHub event, action                         | CDEvent (subject id)                            |
|----------------------------------------------|-------------------------------------------------|
| pull_request opened                          | change.created (PR number)                      |
| pull_request synchronize, edited, reopened   | change.updated                                  |
| pull_request closed, merged / not merged     | change.merged / change.abandoned                |
| pull_request_review submitted                | change.reviewed (PR number)                     |
| push, `before` all zeros, refs/heads/*       | branch.created (branch name)                    |
| push, `after` all zeros, refs/heads/*        | branch.deleted (branch name)                    |
| workflow_run requested/in_progress/completed | pipelinerun.queued/started/finished             |
|                                              | (`<run id>/attempts/<n>`)                       |
| workflow_job in_progress/completed           | taskrun.started/finished (job id)               |
| release published                            | artifact.published (`pkg:github/owner/repo@tag`)|
| registry_package / package published         | artifact.published (purl of the package)        |
| deployment_status, state success             | service.deployed (repository full name)         |
| issues opened / closed                       | ticket.created / ticket.closed (issue number)   |
| issues edited, reopened, (un)labeled,        | ticket.updated                                  |
| (un)assigned, (de)milestoned                 |                                                 |

Outcomes of workflow conclusions: success→success, failure and timed_out→failure,
cancelled→cancel, anything else (neutral, skipped, action_required, stale, ...)→error.

Decisions:
- A plain push to an existing branch is published raw only (`com.github.push`). No CDEvent
  says "commits landed on a branch": `change.merged` means a reviewed change was accepted, and
  the PR's own `closed` event already says that. Trigger on `com.github.push` for pushes.
- Branch creation and deletion come from the push event's zero SHA (DESIGN section 5). GitHub
  sends a `create`/`delete` event for the same branch too; mapping both would emit every
  branch event twice under different ids, so `create`/`delete` are published raw only.
- `push` is GitHub's default webhook event, which is a further reason to read branches there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypedDict, cast
from urllib.parse import urlsplit

from brokers.event import Event
from cdevents import build
from cdevents.binding import Fields, Translation, derived_id, raw_event, to_cloudevent
from cdevents.errors import PayloadError, ValidationError
from cdevents.events import (
    ArtifactPublished,
    CDEvent,
    ChangeCreated,
    PipelineRun,
    PipelineRunFinished,
    PipelineRunStarted,
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

DEFAULT_SOURCE: Final = "https://github.com"
ZERO_SHA: Final = "0" * 40
OUTCOMES: Final[dict[str, Outcome]] = {
    "success": "success",
    "failure": "failure",
    "timed_out": "failure",
    "cancelled": "cancel",
}
_TICKET_UPDATES: Final = frozenset(
    {
        "edited",
        "reopened",
        "labeled",
        "unlabeled",
        "assigned",
        "unassigned",
        "milestoned",
        "demilestoned",
    }
)
_RESOLUTIONS: Final = {
    "completed": "completed",
    "not_planned": "withdrawn",
    "duplicate": "duplicate",
}


def translate(event_name: str, delivery_id: str, payload: dict[str, Any]) -> Translation:
    """The raw event and mapped CDEvents of one GitHub delivery.

    Raises `PayloadError` naming the header or field when the delivery cannot be read.
    """
    if not event_name:
        raise PayloadError("the X-GitHub-Event header is missing", field="X-GitHub-Event")
    if not delivery_id:
        raise PayloadError("the X-GitHub-Delivery header is missing", field="X-GitHub-Delivery")
    fields = Fields(payload)
    action = fields.maybe_text("action")
    raw_type = f"com.github.{event_name}" + (f".{action}" if action else "")
    source = fields.maybe_text("repository.html_url") or DEFAULT_SOURCE
    raw = raw_event(id=delivery_id, source=source, type=raw_type, payload=payload)
    handler = _HANDLERS.get(event_name)
    if handler is None:
        return Translation(raw)
    try:
        mapped = handler(_Delivery(fields, action or "", source, raw))
    except ValidationError as exc:
        raise PayloadError(f"{raw_type} maps to an invalid CDEvent: {exc}") from exc
    return Translation(raw, tuple(to_cloudevent(event) for event in mapped))


class _Common(TypedDict):
    source: str
    subject_id: str
    id: str


@dataclass(frozen=True, slots=True)
class _Delivery:
    p: Fields
    action: str
    source: str
    raw: Event

    def common(self, subject_id: str) -> _Common:
        """Builder arguments shared by every CDEvent of this delivery (it maps to one)."""
        return {"source": self.source, "subject_id": subject_id, "id": self.mapped_id}

    @property
    def mapped_id(self) -> str:
        return derived_id(self.raw.source, self.raw.id, "0")

    def repository(self) -> Reference:
        url = urlsplit(self.p.text("repository.html_url"))
        return {"id": self.p.text("repository.full_name"), "source": f"{url.scheme}://{url.netloc}"}

    def owner_and_name(self) -> tuple[str, str]:
        owner, _, name = self.p.text("repository.full_name").partition("/")
        return owner, name


def _pull_request(d: _Delivery) -> list[CDEvent]:
    pr = d.p.node("pull_request")
    common = d.common(pr.ident("number"))
    repository: RepositoryChange = {"repository": d.repository()}
    if d.action == "opened":
        created: ChangeCreated = {"repository": d.repository()}
        if title := pr.maybe_text("title"):
            created["description"] = title
        return [build.change_created(**common, content=created, timestamp=pr.time("created_at"))]
    if d.action in ("synchronize", "edited", "reopened"):
        return [build.change_updated(**common, content=repository, timestamp=pr.time("updated_at"))]
    if d.action == "closed" and pr.value("merged") is True:
        return [build.change_merged(**common, content=repository, timestamp=pr.time("merged_at"))]
    if d.action == "closed":
        when = pr.time("closed_at")
        return [build.change_abandoned(**common, content=repository, timestamp=when)]
    return []


def _review(d: _Delivery) -> list[CDEvent]:
    if d.action != "submitted":
        return []
    common = d.common(d.p.ident("pull_request.number"))
    when = d.p.time("review.submitted_at")
    return [build.change_reviewed(**common, content={"repository": d.repository()}, timestamp=when)]


def _push(d: _Delivery) -> list[CDEvent]:
    ref = d.p.text("ref")
    if not ref.startswith("refs/heads/"):
        return []  # tags are not branches
    common = d.common(ref.removeprefix("refs/heads/"))
    content: RepositoryChange = {"repository": d.repository()}
    if d.p.text("before") == ZERO_SHA:
        when = d.p.time("repository.pushed_at")
        return [build.branch_created(**common, content=content, timestamp=when)]
    if d.p.text("after") == ZERO_SHA:
        return [build.branch_deleted(**common, content=content)]
    return []  # commits pushed to an existing branch: raw only (module docstring)


def _workflow_run(d: _Delivery) -> list[CDEvent]:
    run = d.p.node("workflow_run")
    common = d.common(f"{run.ident('id')}/attempts/{run.value('run_attempt') or 1}")
    name = run.maybe_text("name") or d.p.maybe_text("workflow.name") or run.ident("id")
    uri = run.text("html_url")
    if d.action == "requested":
        queued: PipelineRun = {"pipelineName": name, "uri": uri}
        return [
            build.pipelinerun_queued(**common, content=queued, timestamp=run.time("created_at"))
        ]
    if d.action == "in_progress":
        started: PipelineRunStarted = {"pipelineName": name, "uri": uri}
        when = run.time("run_started_at") or run.time("updated_at")
        return [build.pipelinerun_started(**common, content=started, timestamp=when)]
    if d.action == "completed":
        conclusion = run.maybe_text("conclusion") or "unknown"
        finished: PipelineRunFinished = {
            "pipelineName": name,
            "uri": uri,
            "outcome": OUTCOMES.get(conclusion, "error"),
        }
        if finished["outcome"] != "success":
            finished["errors"] = f"workflow run concluded {conclusion}"
        when = run.time("updated_at")
        return [build.pipelinerun_finished(**common, content=finished, timestamp=when)]
    return []


def _workflow_job(d: _Delivery) -> list[CDEvent]:
    job = d.p.node("workflow_job")
    common = d.common(job.ident("id"))
    run_id = f"{job.ident('run_id')}/attempts/{job.value('run_attempt') or 1}"
    started: TaskRun = {
        "taskName": job.text("name"),
        "uri": job.text("html_url"),
        "pipelineRun": {"id": run_id, "source": d.source},
    }
    if d.action == "in_progress":
        when = job.time("started_at")
        return [build.taskrun_started(**common, content=started, timestamp=when)]
    if d.action == "completed":
        conclusion = job.maybe_text("conclusion") or "unknown"
        finished = cast(TaskRunFinished, dict(started))
        finished["outcome"] = OUTCOMES.get(conclusion, "error")
        if finished["outcome"] != "success":
            finished["errors"] = f"workflow job concluded {conclusion}"
        when = job.time("completed_at")
        return [build.taskrun_finished(**common, content=finished, timestamp=when)]
    return []


def _release(d: _Delivery) -> list[CDEvent]:
    if d.action != "published":
        return []
    release = d.p.node("release")
    owner, name = d.owner_and_name()
    subject = build.purl("github", owner.lower(), name.lower(), release.text("tag_name"))
    content: ArtifactPublished = {}
    if user := release.maybe_text("author.login"):
        content["user"] = user
    when = release.time("published_at")
    return [build.artifact_published(**d.common(subject), content=content, timestamp=when)]


def _package(d: _Delivery) -> list[CDEvent]:
    if d.action != "published":
        return []
    package = d.p.node("registry_package" if d.p.has("registry_package") else "package")
    content: ArtifactPublished = {}
    user = package.maybe_text("package_version.author.login") or d.p.maybe_text("sender.login")
    if user:
        content["user"] = user
    when = package.time("package_version.created_at") or package.time("updated_at")
    subject = _package_purl(package)
    return [build.artifact_published(**d.common(subject), content=content, timestamp=when)]


def _package_purl(package: Fields) -> str:
    """The purl of a GitHub Packages version, by ecosystem."""
    kind = package.text("package_type").lower()
    owner = package.maybe_text("namespace") or package.text("owner.login")
    name = package.text("name")
    version = package.text("package_version.version")
    if kind in ("container", "docker"):
        registry = urlsplit(package.maybe_text("registry.url") or "https://ghcr.io").netloc
        qualifiers = {"repository_url": f"{registry}/{owner}/{name}".lower()}
        if tag := package.maybe_text("package_version.container_metadata.tag.name"):
            qualifiers["tag"] = tag
        return build.purl("oci", None, name.rsplit("/", 1)[-1].lower(), version, qualifiers)
    if kind == "npm":
        return build.purl("npm", f"@{owner.lower()}", name, version)
    if kind == "maven" and "." in name:
        group, _, artifact = name.rpartition(".")
        return build.purl("maven", group, artifact, version)
    if kind in ("rubygems", "nuget"):
        return build.purl("gem" if kind == "rubygems" else "nuget", None, name, version)
    return build.purl("generic", owner, name, version)


def _deployment_status(d: _Delivery) -> list[CDEvent]:
    status = d.p.node("deployment_status")
    if status.text("state") != "success":
        return []
    deployment = d.p.node("deployment")
    owner, name = d.owner_and_name()
    environment = status.maybe_text("environment") or deployment.text("environment")
    content: ServiceArtifact = {
        "environment": {"id": environment},
        "artifactId": build.purl("github", owner.lower(), name.lower(), deployment.text("sha")),
    }
    common = d.common(d.p.text("repository.full_name"))
    when = status.time("updated_at") or status.time("created_at")
    return [build.service_deployed(**common, content=content, timestamp=when)]


def _issues(d: _Delivery) -> list[CDEvent]:
    issue = d.p.node("issue")
    common = d.common(issue.ident("number"))
    uri, summary, creator = issue.text("html_url"), issue.text("title"), issue.text("user.login")
    sender = d.p.maybe_text("sender.login")
    if d.action == "opened":
        created: TicketCreated = {"uri": uri, "summary": summary, "creator": creator}
        _ticket_details(created, issue)
        when = issue.time("created_at")
        return [build.ticket_created(**common, content=created, timestamp=when)]
    if d.action == "closed":
        reason = issue.maybe_text("state_reason") or "completed"
        closed: TicketClosed = {
            "uri": uri,
            "summary": summary,
            "creator": creator,
            "resolution": _RESOLUTIONS.get(reason, reason),
        }
        if sender:
            closed["updatedBy"] = sender
        _ticket_details(closed, issue)
        return [build.ticket_closed(**common, content=closed, timestamp=issue.time("closed_at"))]
    if d.action in _TICKET_UPDATES:
        updated: TicketUpdated = {"uri": uri, "summary": summary, "creator": creator}
        if sender:
            updated["updatedBy"] = sender
        _ticket_details(updated, issue)
        when = issue.time("updated_at")
        return [build.ticket_updated(**common, content=updated, timestamp=when)]
    return []


def _ticket_details(ticket: Ticket, issue: Fields) -> None:
    ticket["assignees"] = [user.text("login") for user in issue.nodes("assignees")]
    ticket["labels"] = [label.text("name") for label in issue.nodes("labels")]
    if milestone := issue.maybe_text("milestone.title"):
        ticket["milestone"] = milestone
    if kind := issue.maybe_text("type.name"):
        ticket["ticketType"] = kind.lower()


_HANDLERS: Final[dict[str, Callable[[_Delivery], list[CDEvent]]]] = {
    "pull_request": _pull_request,
    "pull_request_review": _review,
    "push": _push,
    "workflow_run": _workflow_run,
    "workflow_job": _workflow_job,
    "release": _release,
    "registry_package": _package,
    "package": _package,
    "deployment_status": _deployment_status,
    "issues": _issues,
}
