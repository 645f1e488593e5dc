"""CDEvents 0.5.1 for cemesh: the vocabulary, builders, validation, the CloudEvent binding,
and pure translators from GitHub, GitLab and Tekton events.

`cdevents.build.<subject>_<predicate>(...)` builds a validated event, `parse`/`validate` check
one, `to_cloudevent`/`from_cloudevent` move between CDEvents and `brokers.Event`, and
`cdevents.github`/`gitlab`/`tekton.translate` turn CI events into a `Translation`.
"""

from typing import Final

from cdevents import build
from cdevents.binding import Translation, derived_id, from_cloudevent, to_cloudevent
from cdevents.build import Builder, create, end_link, path_link, relation_link
from cdevents.errors import CDEventsError, PayloadError, Problem, ValidationError
from cdevents.events import REGISTRY, SPEC_VERSION, CDEvent, EventType, lookup
from cdevents.validate import parse, problems, validate

CHAIN_LABEL: Final = "cemesh.dev/chain-id"
"""Label on a Tekton run: the `chainId` of the CDEvent that caused it."""
EVENT_LABEL: Final = "cemesh.dev/event-id"
"""Label on a Tekton run: the `id` of the CDEvent that caused it."""

__all__ = [
    "CHAIN_LABEL",
    "EVENT_LABEL",
    "REGISTRY",
    "SPEC_VERSION",
    "Builder",
    "CDEvent",
    "CDEventsError",
    "EventType",
    "PayloadError",
    "Problem",
    "Translation",
    "ValidationError",
    "build",
    "create",
    "derived_id",
    "end_link",
    "from_cloudevent",
    "lookup",
    "parse",
    "path_link",
    "problems",
    "relation_link",
    "to_cloudevent",
    "validate",
]
