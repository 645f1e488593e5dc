"""The PipelineRun an event becomes: its deterministic name, its labels, its spec.

The name is `<prefix>-<16 hex of sha256(source, id)>`: the CloudEvents spec makes (source, id)
an event's identity, so a redelivered event maps to the same name, the create answers 409, and
the run never starts twice. It is a DNS-1123 label of at most 63 characters because Tekton
copies run names into label values.

Labels carry the triggering event's id and chain so Tekton's own events about the run (which
embed the whole PipelineRun) can be traced back: `cemesh.dev/event-id`, `cemesh.dev/chain-id`.
A label value must be at most 63 of `[A-Za-z0-9_.-]`; ids that are not (URLs, long ids) are
sanitized with a hash suffix, and the exact values are always in the annotations of the same
names, which readers should prefer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .bindings import Binding
from .errors import BadEvent
from .paths import EventView

GROUP: Final = "tekton.dev"
VERSION: Final = "v1"
PLURAL: Final = "pipelineruns"
EVENT_ID: Final = "cemesh.dev/event-id"
CHAIN_ID: Final = "cemesh.dev/chain-id"
EVENT_SOURCE: Final = "cemesh.dev/event-source"
EVENT_TYPE: Final = "cemesh.dev/event-type"
TRIGGER: Final = "cemesh.dev/trigger"
QUEUED_ID: Final = "cemesh.dev/queued-id"
NAME_HASH_LENGTH: Final = 16
LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Cause:
    """The triggering event, as the run and the reply refer to it."""

    id: str
    source: str
    type: str
    context_id: str
    """The CDEvent's `context.id` when the event is a CDEvent (links point at it), else `id`."""
    chain_id: str
    """The CDEvent's `context.chainId` when present, else the event's id: a new chain."""

    @classmethod
    def of(cls, event: EventView) -> Cause:
        attributes = event.attributes
        event_id, source = str(attributes["id"]), str(attributes["source"])
        context = _cdevent_context(event)
        context_id = str(context.get("id") or event_id) if context else event_id
        chain = context.get("chainId") if context else None
        return cls(
            event_id,
            source,
            str(attributes["type"]),
            context_id,
            chain if isinstance(chain, str) and chain else event_id,
        )


def _cdevent_context(event: EventView) -> Mapping[str, Any]:
    if not str(event.attributes.get("type", "")).startswith("dev.cdevents."):
        return {}
    try:
        body = event.body
    except BadEvent:
        return {}
    context = body.get("context") if isinstance(body, Mapping) else None
    return context if isinstance(context, Mapping) else {}


def run_name(prefix: str, source: str, event_id: str) -> str:
    """`<prefix>-<hash>`: the same event always gives the same name."""
    digest = hashlib.sha256(json.dumps([source, event_id]).encode()).hexdigest()
    stem = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", prefix.lower()))
    stem = stem.strip("-")[: 63 - NAME_HASH_LENGTH - 1].strip("-") or "run"
    return f"{stem}-{digest[:NAME_HASH_LENGTH]}"


def label_value(text: str) -> str:
    """`text` if it is a valid label value, else a sanitized stem plus 10 hex of its hash."""
    if len(text) <= 63 and LABEL_VALUE.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")[:52].rstrip("-_.")
    return f"{stem}-{digest}" if stem else digest


def build(
    binding: Binding, event: EventView, cause: Cause, namespace: str, name: str, queued_id: str
) -> dict[str, Any]:
    """The PipelineRun for this event; BadEvent (from the templates) when a path is missing."""
    labels = {k: label_value(t.render(event)) for k, t in (binding.labels or {}).items()}
    labels[EVENT_ID] = label_value(cause.id)
    labels[CHAIN_ID] = label_value(cause.chain_id)
    annotations = {k: t.render(event) for k, t in (binding.annotations or {}).items()}
    annotations.update(
        {
            EVENT_ID: cause.id,
            EVENT_SOURCE: cause.source,
            EVENT_TYPE: cause.type,
            CHAIN_ID: cause.chain_id,
            TRIGGER: binding.name,
            QUEUED_ID: queued_id,
        }
    )
    ref = dict(binding.pipeline_ref) if binding.pipeline_ref else {"name": binding.pipeline}
    spec: dict[str, Any] = {"pipelineRef": ref}
    if binding.params:
        spec["params"] = [{"name": p.name, "value": p.render(event)} for p in binding.params]
    if binding.workspaces:
        spec["workspaces"] = [dict(w) for w in binding.workspaces]
    template: dict[str, Any] = {}
    if binding.service_account_name:
        template["serviceAccountName"] = binding.service_account_name
    if binding.pod_template:
        template["podTemplate"] = dict(binding.pod_template)
    if template:
        spec["taskRunTemplate"] = template
    if binding.timeouts:
        spec["timeouts"] = dict(binding.timeouts)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PipelineRun",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }
