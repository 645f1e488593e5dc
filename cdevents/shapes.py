"""What CDEvents 0.5.1 event types are built from: the markers `cdevents.validate` reads
(`MinLength`, `Format`, `Open`) and the shapes subjects share (references, contexts, test
cases, SBOMs...). The event types themselves are in `cdevents.events`.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Required, TypeAlias, TypedDict

# -- markers read by cdevents.validate -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MinLength:
    """A string must have at least `value` characters (JSON Schema `minLength`)."""

    value: int


@dataclass(frozen=True, slots=True)
class Format:
    """A string must follow a JSON Schema format: `uri`, `uri-reference` or `date-time`."""

    name: Literal["uri", "uri-reference", "date-time"]


@dataclass(frozen=True, slots=True)
class Open:
    """An object that accepts properties it does not list (no `additionalProperties: false`)."""


OPEN: Final = Open()

NonEmpty: TypeAlias = Annotated[str, MinLength(1)]
Uri: TypeAlias = Annotated[str, Format("uri")]
NonEmptyUri: TypeAlias = Annotated[str, MinLength(1), Format("uri")]
UriRef: TypeAlias = Annotated[str, MinLength(1), Format("uri-reference")]
DateTime: TypeAlias = Annotated[str, Format("date-time")]
Outcome: TypeAlias = Literal["success", "failure", "cancel", "error"]
Severity: TypeAlias = Literal["low", "medium", "high", "critical"]
Tags: TypeAlias = dict[str, Any]
CustomData: TypeAlias = dict[str, Any] | str

# -- shared shapes ---------------------------------------------------------------------------


class Reference(TypedDict, total=False):
    """A pointer to another subject: `{"id": ..., "source": ...}`."""

    id: Required[NonEmpty]
    source: UriRef


class LooseReference(TypedDict, total=False):
    """A reference whose `source` is any string (test suite and test case runs)."""

    id: Required[NonEmpty]
    source: str


class Sbom(TypedDict):
    uri: UriRef


class TestCase(TypedDict, total=False):
    id: Required[NonEmpty]
    version: str
    name: str
    type: Literal[
        "performance",
        "functional",
        "unit",
        "security",
        "compliance",
        "integration",
        "e2e",
        "other",
    ]
    uri: Uri


class TestSuite(TypedDict, total=False):
    id: Required[NonEmpty]
    version: str
    name: str
    uri: Uri


class TestTrigger(TypedDict, total=False):
    type: Literal["manual", "pipeline", "event", "schedule", "other"]
    uri: Uri


class ContextId(TypedDict, total=False):
    contextId: NonEmpty


class RequiredContextId(TypedDict):
    contextId: NonEmpty


# Embedded links (links spec): "from" is a keyword, hence the functional syntax.
EmbeddedLinkEnd = TypedDict(
    "EmbeddedLinkEnd",
    {
        "linkType": Required[Literal["END"]],
        "from": Annotated[RequiredContextId, OPEN],
        "tags": Tags,
    },
    total=False,
)
EmbeddedLinkPath = TypedDict(
    "EmbeddedLinkPath",
    {
        "linkType": Required[Literal["PATH"]],
        "from": Required[Annotated[RequiredContextId, OPEN]],
        "tags": Tags,
    },
    total=False,
)


class EmbeddedLinkRelation(TypedDict, total=False):
    linkType: Required[Literal["RELATION"]]
    linkKind: Required[NonEmpty]
    target: Required[Annotated[ContextId, OPEN]]
    tags: Tags


EmbeddedLink: TypeAlias = EmbeddedLinkEnd | EmbeddedLinkPath | EmbeddedLinkRelation


class Context(TypedDict, total=False):
    specversion: Required[NonEmpty]
    id: Required[NonEmpty]
    source: Required[UriRef]
    type: Required[NonEmpty]
    timestamp: Required[DateTime]
    schemaUri: NonEmptyUri
    chainId: NonEmpty
    links: list[EmbeddedLink]


class Subject(TypedDict, total=False):
    id: Required[NonEmpty]
    source: UriRef
    type: str
    content: Required[dict[str, Any]]
