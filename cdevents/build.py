"""Builders: one per event type, each filling what a producer should not have to think about.

`build.change_merged(source=..., subject_id=..., content={"repository": {...}})` sets
`specversion`, a uuid4 `id`, an RFC 3339 UTC `timestamp` and the exact `type`, then validates,
so a builder never returns an event the official schema would reject. The `content` argument
is typed per event (mypy flags a misspelt field); `create("change.merged", ...)` is the same for
callers that pick the type at run time. Translators pass `id` and `timestamp` explicitly so a
redelivered webhook maps to the same event.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Generic, TypeVar, cast
from urllib.parse import quote

from cdevents.events import (
    REGISTRY,
    SPEC_VERSION,
    ArtifactPackaged,
    ArtifactPublished,
    ArtifactSigned,
    ArtifactUser,
    BuildFinished,
    CDEvent,
    ChangeCreated,
    Empty,
    Environment,
    EnvironmentDeleted,
    EventType,
    Incident,
    IncidentReported,
    PipelineRun,
    PipelineRunFinished,
    PipelineRunStarted,
    Repository,
    RepositoryChange,
    RepositoryCreated,
    ServiceArtifact,
    ServiceEnvironment,
    TaskRun,
    TaskRunFinished,
    TestCaseRunFinished,
    TestCaseRunSkipped,
    TestCaseRunStarted,
    TestOutputPublished,
    TestSuiteRunFinished,
    TestSuiteRunStarted,
    TicketClosed,
    TicketCreated,
    TicketUpdated,
    lookup,
)
from cdevents.shapes import (
    Context,
    CustomData,
    EmbeddedLink,
    EmbeddedLinkEnd,
    EmbeddedLinkPath,
    EmbeddedLinkRelation,
    Subject,
)
from cdevents.validate import parse

C = TypeVar("C")


def rfc3339(moment: dt.datetime | None = None) -> str:
    """`moment` (default: now) as RFC 3339 in UTC with microseconds, e.g. `...T12:00:00.5Z`."""
    moment = moment or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        raise ValueError("a CDEvent timestamp needs an aware datetime")
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def create(
    event_type: str | EventType[Any],
    *,
    source: str,
    subject_id: str,
    content: Mapping[str, Any] | None = None,
    subject_source: str | None = None,
    subject_type: str | None = None,
    chain_id: str | None = None,
    links: Sequence[EmbeddedLink] | None = None,
    schema_uri: str | None = None,
    custom_data: CustomData | None = None,
    custom_data_content_type: str | None = None,
    id: str | None = None,
    timestamp: str | dt.datetime | None = None,
) -> CDEvent:
    """A new, validated CDEvent of `event_type` (`"change.merged"` or an `EventType`).

    Raises `ValidationError` naming the JSON path when the result would not be valid.
    """
    kind = lookup(event_type) if isinstance(event_type, str) else event_type
    when = timestamp if isinstance(timestamp, str) else rfc3339(timestamp)
    context: Context = {
        "specversion": SPEC_VERSION,
        "id": id or str(uuid.uuid4()),
        "source": source,
        "type": kind.type,
        "timestamp": when,
    }
    if schema_uri is not None:
        context["schemaUri"] = schema_uri
    if chain_id is not None:
        context["chainId"] = chain_id
    if links is not None:
        context["links"] = list(links)
    subject: Subject = {"id": subject_id, "content": dict(content or {})}
    if subject_source is not None:
        subject["source"] = subject_source
    if subject_type is not None:
        subject["type"] = subject_type
    doc: dict[str, Any] = {"context": context, "subject": subject}
    if custom_data is not None:
        doc["customData"] = custom_data
    if custom_data_content_type is not None:
        doc["customDataContentType"] = custom_data_content_type
    return parse(doc)  # validates, and copies so the caller's dicts are never kept


class Builder(Generic[C]):
    """`create` bound to one event type, with `content` typed as that type's TypedDict."""

    __slots__ = ("event_type",)

    def __init__(self, event_type: EventType[C]) -> None:
        self.event_type = event_type

    def __repr__(self) -> str:
        return f"Builder({self.event_type.type!r})"

    def __call__(
        self,
        *,
        source: str,
        subject_id: str,
        content: C,
        subject_source: str | None = None,
        subject_type: str | None = None,
        chain_id: str | None = None,
        links: Sequence[EmbeddedLink] | None = None,
        schema_uri: str | None = None,
        custom_data: CustomData | None = None,
        custom_data_content_type: str | None = None,
        id: str | None = None,
        timestamp: str | dt.datetime | None = None,
    ) -> CDEvent:
        return create(
            self.event_type,
            source=source,
            subject_id=subject_id,
            content=cast(Mapping[str, Any], content),
            subject_source=subject_source,
            subject_type=subject_type,
            chain_id=chain_id,
            links=links,
            schema_uri=schema_uri,
            custom_data=custom_data,
            custom_data_content_type=custom_data_content_type,
            id=id,
            timestamp=timestamp,
        )


def _builder(name: str, _content: type[C]) -> Builder[C]:
    """The builder of `name`, typed by `_content` (checked against the registry's)."""
    event_type = REGISTRY[name]
    if event_type.content is not _content:
        raise TypeError(f"{name} content is {event_type.content.__name__}")
    return Builder(event_type)


artifact_deleted: Final = _builder("artifact.deleted", ArtifactUser)
artifact_downloaded: Final = _builder("artifact.downloaded", ArtifactUser)
artifact_packaged: Final = _builder("artifact.packaged", ArtifactPackaged)
artifact_published: Final = _builder("artifact.published", ArtifactPublished)
artifact_signed: Final = _builder("artifact.signed", ArtifactSigned)
branch_created: Final = _builder("branch.created", RepositoryChange)
branch_deleted: Final = _builder("branch.deleted", RepositoryChange)
build_finished: Final = _builder("build.finished", BuildFinished)
build_queued: Final = _builder("build.queued", Empty)
build_started: Final = _builder("build.started", Empty)
change_abandoned: Final = _builder("change.abandoned", RepositoryChange)
change_created: Final = _builder("change.created", ChangeCreated)
change_merged: Final = _builder("change.merged", RepositoryChange)
change_reviewed: Final = _builder("change.reviewed", RepositoryChange)
change_updated: Final = _builder("change.updated", RepositoryChange)
environment_created: Final = _builder("environment.created", Environment)
environment_deleted: Final = _builder("environment.deleted", EnvironmentDeleted)
environment_modified: Final = _builder("environment.modified", Environment)
incident_detected: Final = _builder("incident.detected", Incident)
incident_reported: Final = _builder("incident.reported", IncidentReported)
incident_resolved: Final = _builder("incident.resolved", Incident)
pipelinerun_finished: Final = _builder("pipelinerun.finished", PipelineRunFinished)
pipelinerun_queued: Final = _builder("pipelinerun.queued", PipelineRun)
pipelinerun_started: Final = _builder("pipelinerun.started", PipelineRunStarted)
repository_created: Final = _builder("repository.created", RepositoryCreated)
repository_deleted: Final = _builder("repository.deleted", Repository)
repository_modified: Final = _builder("repository.modified", Repository)
service_deployed: Final = _builder("service.deployed", ServiceArtifact)
service_published: Final = _builder("service.published", ServiceEnvironment)
service_removed: Final = _builder("service.removed", ServiceEnvironment)
service_rolledback: Final = _builder("service.rolledback", ServiceArtifact)
service_upgraded: Final = _builder("service.upgraded", ServiceArtifact)
taskrun_finished: Final = _builder("taskrun.finished", TaskRunFinished)
taskrun_started: Final = _builder("taskrun.started", TaskRun)
testcaserun_finished: Final = _builder("testcaserun.finished", TestCaseRunFinished)
testcaserun_queued: Final = _builder("testcaserun.queued", TestCaseRunStarted)
testcaserun_skipped: Final = _builder("testcaserun.skipped", TestCaseRunSkipped)
testcaserun_started: Final = _builder("testcaserun.started", TestCaseRunStarted)
testoutput_published: Final = _builder("testoutput.published", TestOutputPublished)
testsuiterun_finished: Final = _builder("testsuiterun.finished", TestSuiteRunFinished)
testsuiterun_queued: Final = _builder("testsuiterun.queued", TestSuiteRunStarted)
testsuiterun_started: Final = _builder("testsuiterun.started", TestSuiteRunStarted)
ticket_closed: Final = _builder("ticket.closed", TicketClosed)
ticket_created: Final = _builder("ticket.created", TicketCreated)
ticket_updated: Final = _builder("ticket.updated", TicketUpdated)

BUILDERS: Final[Mapping[str, Builder[Any]]] = {
    value.event_type.name: value for value in list(globals().values()) if isinstance(value, Builder)
}
"""Every builder by event name (`change_merged` under `change.merged`)."""


# -- links (CDEvents links spec, embedded form) ----------------------------------------------


def relation_link(
    target_id: str, *, kind: str = "TRIGGER", tags: Mapping[str, Any] | None = None
) -> EmbeddedLinkRelation:
    """This event relates to event `target_id` (`kind` such as TRIGGER, ARTIFACT)."""
    link: EmbeddedLinkRelation = {
        "linkType": "RELATION",
        "linkKind": kind,
        "target": {"contextId": target_id},
    }
    if tags is not None:
        link["tags"] = dict(tags)
    return link


def path_link(from_id: str, *, tags: Mapping[str, Any] | None = None) -> EmbeddedLinkPath:
    """This event follows event `from_id` in its chain."""
    link: EmbeddedLinkPath = {"linkType": "PATH", "from": {"contextId": from_id}}
    if tags is not None:
        link["tags"] = dict(tags)
    return link


def end_link(
    from_id: str | None = None, *, tags: Mapping[str, Any] | None = None
) -> EmbeddedLinkEnd:
    """This event ends its chain (after `from_id`, when given)."""
    link: EmbeddedLinkEnd = {"linkType": "END"}
    if from_id is not None:
        link["from"] = {"contextId": from_id}
    if tags is not None:
        link["tags"] = dict(tags)
    return link


# -- artifact ids ----------------------------------------------------------------------------


def purl(
    kind: str,
    namespace: str | None,
    name: str,
    version: str | None = None,
    qualifiers: Mapping[str, str] | None = None,
) -> str:
    """A package URL (`pkg:github/owner/repo@v1.0`), the id CDEvents gives artifacts.

    Each part is percent-encoded as the purl spec asks (a digest's `:` becomes `%3A`).
    """
    parts = [f"pkg:{kind}/"]
    if namespace:
        parts.append("/".join(quote(segment, safe="") for segment in namespace.split("/")) + "/")
    parts.append(quote(name, safe=""))
    if version:
        parts.append("@" + quote(version, safe=""))
    if qualifiers:
        parts.append(
            "?"
            + "&".join(
                f"{key}={quote(value, safe='/')}" for key, value in sorted(qualifiers.items())
            )
        )
    return "".join(parts)
