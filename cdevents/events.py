"""The CDEvents 0.5.1 vocabulary: the 45 event types, their content, and the event value.

Why TypedDicts: one declaration serves two readers. mypy checks every `content={...}` a builder
is given, and `cdevents.validate` compiles the same annotations into its runtime checks
(`Required`, `Literal` enums, `MinLength`/`Format` markers, closed objects), so the static and
runtime models cannot drift. Every object is closed (`additionalProperties: false`) unless
annotated `OPEN`, as in the official schemas. The facts come from the 0.5.1 schemas; a test
compares this table with them field by field.

Why not the official Python SDK: it is abandoned, speaks spec 0.1 and also imports as
`cdevents` (DESIGN section 2).
"""

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Generic, Literal, Required, TypedDict, TypeVar

from cdevents.shapes import (
    OPEN,
    Context,
    CustomData,
    EmbeddedLink,
    LooseReference,
    NonEmpty,
    NonEmptyUri,
    Outcome,
    Reference,
    Sbom,
    Severity,
    Subject,
    TestCase,
    TestSuite,
    TestTrigger,
    Uri,
    UriRef,
)

SPEC_VERSION: Final = "0.5.1"

# -- content of each event type --------------------------------------------------------------


class Empty(TypedDict):
    pass


class ArtifactUser(TypedDict, total=False):
    user: NonEmpty


class ArtifactPackaged(TypedDict, total=False):
    change: Required[Reference]
    sbom: Sbom


class ArtifactPublished(TypedDict, total=False):
    sbom: Sbom
    user: NonEmpty


class ArtifactSigned(TypedDict):
    signature: NonEmpty


class RepositoryChange(TypedDict, total=False):
    """Branch and change events (but change.created) carry only their repository."""

    repository: Reference


class ChangeCreated(TypedDict, total=False):
    description: NonEmpty
    repository: Reference


class BuildFinished(TypedDict, total=False):
    artifactId: str


class Environment(TypedDict, total=False):
    name: str
    uri: Uri


class EnvironmentDeleted(TypedDict, total=False):
    name: str


class Incident(TypedDict, total=False):
    description: str
    environment: Required[Reference]
    service: Reference
    artifactId: NonEmpty


class IncidentReported(Incident, total=False):
    ticketURI: Required[NonEmptyUri]


class PipelineRun(TypedDict, total=False):
    pipelineName: str
    uri: Uri


class PipelineRunStarted(TypedDict):
    pipelineName: str
    uri: Uri


class PipelineRunFinished(PipelineRun, total=False):
    outcome: Outcome
    errors: str


class Repository(TypedDict, total=False):
    name: str
    owner: str
    uri: Uri
    viewUrl: Uri


class RepositoryCreated(TypedDict, total=False):
    name: Required[NonEmpty]
    owner: str
    uri: Required[Uri]
    viewUrl: Uri


class ServiceArtifact(TypedDict):
    environment: Reference
    artifactId: NonEmpty


class ServiceEnvironment(TypedDict, total=False):
    environment: Reference


class TaskRun(TypedDict, total=False):
    taskName: str
    uri: Uri
    pipelineRun: Reference


class TaskRunFinished(TaskRun, total=False):
    outcome: str  # the 0.5.1 schema leaves it free; pipelinerun.finished has the enum
    errors: str


class TestCaseRunStarted(TypedDict, total=False):
    """testcaserun.queued and testcaserun.started."""

    trigger: Annotated[TestTrigger, OPEN]
    environment: Required[Reference]
    testSuiteRun: LooseReference
    testCase: TestCase


class TestCaseRunFinished(TypedDict, total=False):
    outcome: Required[Outcome]
    severity: Severity
    reason: str
    environment: Required[Reference]
    testSuiteRun: LooseReference
    testCase: TestCase


class TestCaseRunSkipped(TypedDict, total=False):
    reason: str
    environment: Reference
    testSuiteRun: LooseReference
    testCase: TestCase


class TestOutputPublished(TypedDict, total=False):
    outputType: Required[Literal["report", "video", "image", "log", "other"]]
    format: Required[str]
    uri: Uri
    testCaseRun: LooseReference


class TestSuiteRunStarted(TypedDict, total=False):
    """testsuiterun.queued and testsuiterun.started."""

    trigger: Annotated[TestTrigger, OPEN]
    environment: Required[Reference]
    testSuite: TestSuite


class TestSuiteRunFinished(TypedDict, total=False):
    environment: Required[Reference]
    testSuite: TestSuite
    outcome: Required[Outcome]
    severity: Severity
    reason: str


class Ticket(TypedDict, total=False):
    """Fields every ticket event has. `ticketType` (bug, enhancement, incident, task, question),
    `priority` (low, medium, high) and `resolution` (completed, withdrawn, duplicate) name known
    values but accept any string, as the schemas do."""

    ticketType: str
    group: str
    assignees: list[str]
    priority: str
    labels: list[str]
    milestone: str
    uri: Required[UriRef]


class TicketCreated(Ticket, total=False):
    summary: Required[str]
    creator: Required[NonEmpty]


class TicketUpdated(Ticket, total=False):
    summary: str
    creator: NonEmpty
    updatedBy: str


class TicketClosed(TicketUpdated, total=False):
    resolution: Required[NonEmpty]


# -- event types -----------------------------------------------------------------------------

C = TypeVar("C")

_TYPE: Final = re.compile(
    r"dev\.cdevents\.(?P<subject>[a-z]+)\.(?P<predicate>[a-z]+)\."
    r"(?P<version>(?P<major>0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?)"
)
_VERSION: Final = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:-[0-9A-Za-z.-]+)?")


@dataclass(frozen=True, slots=True)
class EventType(Generic[C]):
    """One CDEvents type: `dev.cdevents.<subject>.<predicate>.<version>` and its content."""

    subject: str
    predicate: str
    version: str
    content: type[C] = field(repr=False)
    subject_type: str | None = None  # ticket.closed alone allows `subject.type: "ticket"`
    loose_source: bool = False  # test* schemas: any `source` string, no uri-reference format

    @property
    def type(self) -> str:
        return f"dev.cdevents.{self.subject}.{self.predicate}.{self.version}"

    @property
    def name(self) -> str:
        return f"{self.subject}.{self.predicate}"


def _types() -> dict[str, EventType[Any]]:
    v2, v3 = "0.2.0", "0.3.0"
    table: list[EventType[Any]] = [
        EventType("artifact", "deleted", v2, ArtifactUser),
        EventType("artifact", "downloaded", v2, ArtifactUser),
        EventType("artifact", "packaged", v3, ArtifactPackaged),
        EventType("artifact", "published", v3, ArtifactPublished),
        EventType("artifact", "signed", v3, ArtifactSigned),
        EventType("branch", "created", v3, RepositoryChange),
        EventType("branch", "deleted", v3, RepositoryChange),
        EventType("build", "finished", v3, BuildFinished),
        EventType("build", "queued", v3, Empty),
        EventType("build", "started", v3, Empty),
        EventType("change", "abandoned", v3, RepositoryChange),
        EventType("change", "created", "0.4.0", ChangeCreated),
        EventType("change", "merged", v3, RepositoryChange),
        EventType("change", "reviewed", v3, RepositoryChange),
        EventType("change", "updated", v3, RepositoryChange),
        EventType("environment", "created", v3, Environment),
        EventType("environment", "deleted", v3, EnvironmentDeleted),
        EventType("environment", "modified", v3, Environment),
        EventType("incident", "detected", v3, Incident),
        EventType("incident", "reported", v3, IncidentReported),
        EventType("incident", "resolved", v3, Incident),
        EventType("pipelinerun", "finished", v3, PipelineRunFinished),
        EventType("pipelinerun", "queued", v3, PipelineRun),
        EventType("pipelinerun", "started", v3, PipelineRunStarted),
        EventType("repository", "created", v3, RepositoryCreated),
        EventType("repository", "deleted", v3, Repository),
        EventType("repository", "modified", v3, Repository),
        EventType("service", "deployed", v3, ServiceArtifact),
        EventType("service", "published", v3, ServiceEnvironment),
        EventType("service", "removed", v3, ServiceEnvironment),
        EventType("service", "rolledback", v3, ServiceArtifact),
        EventType("service", "upgraded", v3, ServiceArtifact),
        EventType("taskrun", "finished", v3, TaskRunFinished),
        EventType("taskrun", "started", v3, TaskRun),
        EventType("testcaserun", "finished", v3, TestCaseRunFinished, loose_source=True),
        EventType("testcaserun", "queued", v3, TestCaseRunStarted, loose_source=True),
        EventType("testcaserun", "skipped", v2, TestCaseRunSkipped, loose_source=True),
        EventType("testcaserun", "started", v3, TestCaseRunStarted, loose_source=True),
        EventType("testoutput", "published", v3, TestOutputPublished, loose_source=True),
        EventType("testsuiterun", "finished", v3, TestSuiteRunFinished, loose_source=True),
        EventType("testsuiterun", "queued", v3, TestSuiteRunStarted, loose_source=True),
        EventType("testsuiterun", "started", v3, TestSuiteRunStarted, loose_source=True),
        EventType("ticket", "closed", v2, TicketClosed, subject_type="ticket"),
        EventType("ticket", "created", v2, TicketCreated),
        EventType("ticket", "updated", v2, TicketUpdated),
    ]
    return {event_type.name: event_type for event_type in table}


REGISTRY: Final[Mapping[str, EventType[Any]]] = _types()
"""The 45 types of CDEvents 0.5.1 by `<subject>.<predicate>`."""


@dataclass(frozen=True, slots=True)
class TypeName:
    """A parsed CDEvents type string."""

    subject: str
    predicate: str
    version: str
    major: int

    @property
    def name(self) -> str:
        return f"{self.subject}.{self.predicate}"


def parse_type(ce_type: str) -> TypeName | None:
    """Split `dev.cdevents.<subject>.<predicate>.<semver>`; None when it is not that shape."""
    match = _TYPE.fullmatch(ce_type)
    if match is None:
        return None
    return TypeName(match["subject"], match["predicate"], match["version"], int(match["major"]))


def major(version: str) -> int | None:
    """The major number of a `M.m[.p][-pre]` version, None when it is not one."""
    match = _VERSION.fullmatch(version)
    return None if match is None else int(match[1])


def lookup(name: str) -> EventType[Any]:
    """The type named `change.merged`, or exactly `dev.cdevents.change.merged.0.3.0`."""
    if name in REGISTRY:
        return REGISTRY[name]
    parsed = parse_type(name)
    if parsed is not None and parsed.name in REGISTRY:
        known = REGISTRY[parsed.name]
        if known.version == parsed.version:
            return known
    raise KeyError(f"unknown CDEvents {SPEC_VERSION} type {name!r}")


# -- the event value -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CDEvent:
    """A validated CDEvent. Build one with `cdevents.build`, parse one with `cdevents.parse`.

    The dicts inside are owned by the event: treat them as read-only, `to_json()` copies.
    The type and spec versions are kept as received (a compatible minor version stays as is).
    """

    context: Context
    subject: Subject
    custom_data: CustomData | None = None
    custom_data_content_type: str | None = None

    @property
    def id(self) -> str:
        return self.context["id"]

    @property
    def source(self) -> str:
        return self.context["source"]

    @property
    def type(self) -> str:
        return self.context["type"]

    @property
    def timestamp(self) -> str:
        return self.context["timestamp"]

    @property
    def chain_id(self) -> str | None:
        return self.context.get("chainId")

    @property
    def links(self) -> list[EmbeddedLink]:
        return self.context.get("links", [])

    @property
    def subject_id(self) -> str:
        return self.subject["id"]

    @property
    def content(self) -> dict[str, Any]:
        return self.subject["content"]

    @property
    def event_type(self) -> EventType[Any]:
        """The registry entry this event validated against (same subject and predicate)."""
        parsed = parse_type(self.type)
        if parsed is None:  # unreachable for events made by build/parse, which validate
            raise LookupError(f"not a CDEvents type: {self.type!r}")
        return REGISTRY[parsed.name]

    def to_json(self) -> dict[str, Any]:
        """The CDEvent as a JSON object (a deep copy, safe to change)."""
        out: dict[str, Any] = {
            "context": copy.deepcopy(self.context),
            "subject": copy.deepcopy(self.subject),
        }
        if self.custom_data is not None:
            out["customData"] = copy.deepcopy(self.custom_data)
        if self.custom_data_content_type is not None:
            out["customDataContentType"] = self.custom_data_content_type
        return out
