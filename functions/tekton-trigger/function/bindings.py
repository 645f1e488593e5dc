"""Bindings: which Pipeline an event starts, and how the event fills in the PipelineRun.

A bindings file is YAML (the shipped default is `bindings.yaml` next to this module):

    bindings:
      - name: build-on-merge                     # required, unique
        type: dev.cdevents.change.merged.0.3.0   # the event's ce type; "prefix*" matches a prefix
        pipeline: build-and-test                 # spec.pipelineRef.name ...
        # pipelineRef: {resolver: git, params: [...]}   # ... or a whole pipelineRef, as is
        namespace: ci                            # default: the function's namespace
        namePrefix: build                        # default: the pipeline (or binding) name
        params:                                  # PipelineRun spec.params; values are templates
          - {name: change-id, value: $(body.subject.id)}
          - {name: files, value: ["$(body.a)", "$(body.b)"]}        # an array param
          - {name: repo, value: {url: "$(body.context.source)"}}    # an object param
        workspaces: [...]                        # spec.workspaces, as is
        serviceAccountName: ci-runner            # spec.taskRunTemplate.serviceAccountName
        podTemplate: {...}                       # spec.taskRunTemplate.podTemplate, as is
        timeouts: {pipeline: 1h0m0s}             # spec.timeouts (pipeline, tasks, finally)
        labels: {team: ci, change: $(body.subject.id)}     # values are templates
        annotations: {source: $(context.source)}           # values are templates

The first binding whose `type` matches the event wins. Unknown keys are errors, like Tekton's
own `additionalProperties: false`; a file that does not load stops the function at start.

Values marked as templates use the path language of paths.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from .errors import BadEvent, BindingsError
from .paths import EventView, Template

BINDING_KEYS: Final = frozenset(
    {
        "name",
        "type",
        "pipeline",
        "pipelineRef",
        "namespace",
        "namePrefix",
        "params",
        "workspaces",
        "serviceAccountName",
        "podTemplate",
        "timeouts",
        "labels",
        "annotations",
    }
)
RESERVED_PREFIXES: Final = ("cemesh.dev/", "tekton.dev/")
DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
QUALIFIED_NAME: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DURATION: Final = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$")


ParamValue = Template | tuple[Template, ...] | dict[str, Template]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    value: ParamValue

    def render(self, event: EventView) -> str | list[str] | dict[str, str]:
        if isinstance(self.value, Template):
            return self.value.render(event)
        if isinstance(self.value, tuple):
            return [item.render(event) for item in self.value]
        return {key: item.render(event) for key, item in self.value.items()}


# ---------------------------------------------------------------- bindings


@dataclass(frozen=True, slots=True)
class Binding:
    name: str
    type: str
    pipeline: str | None
    pipeline_ref: Mapping[str, Any] | None
    namespace: str | None
    name_prefix: str
    params: tuple[Param, ...] = ()
    workspaces: tuple[Mapping[str, Any], ...] = ()
    service_account_name: str | None = None
    pod_template: Mapping[str, Any] | None = None
    timeouts: Mapping[str, str] | None = None
    labels: Mapping[str, Template] | None = None
    annotations: Mapping[str, Template] | None = None

    @property
    def pipeline_name(self) -> str:
        """What the queued CDEvent calls the pipeline."""
        if self.pipeline:
            return self.pipeline
        ref = self.pipeline_ref or {}
        return str(ref.get("name") or self.name)

    def matches(self, event_type: str) -> bool:
        if self.type.endswith("*"):
            return event_type.startswith(self.type[:-1])
        return event_type == self.type


@dataclass(frozen=True, slots=True)
class Bindings:
    bindings: tuple[Binding, ...]
    origin: str

    def for_type(self, event_type: str) -> Binding:
        for binding in self.bindings:
            if binding.matches(event_type):
                return binding
        raise BadEvent(f"no binding in {self.origin} for events of type {event_type}", "NoBinding")


def load_bindings(path: Path) -> Bindings:
    """Read and check a bindings file; BindingsError names the file, binding and key."""
    try:
        doc = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BindingsError(f"{path}: cannot read bindings: {exc}") from None
    return parse_bindings(doc, str(path))


def parse_bindings(doc: Any, origin: str) -> Bindings:
    if not isinstance(doc, Mapping) or set(doc) != {"bindings"}:
        raise BindingsError(f"{origin}: a bindings file is a mapping with one key, 'bindings'")
    raw = doc["bindings"]
    if not isinstance(raw, list) or not raw:
        raise BindingsError(f"{origin}: 'bindings' must be a non-empty list")
    bindings: list[Binding] = []
    for index, item in enumerate(raw):
        label = f"{origin}: bindings[{index}]"
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            label = f"{origin}: binding '{item['name']}'"
        try:
            bindings.append(_binding(item))
        except ValueError as exc:
            raise BindingsError(f"{label}: {exc}") from None
    names = [b.name for b in bindings]
    exact = [b.type for b in bindings if not b.type.endswith("*")]
    for what, values in (("name", names), ("type", exact)):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise BindingsError(f"{origin}: more than one binding with {what} {twice[0]}")
    return Bindings(tuple(bindings), origin)


def _binding(raw: Any) -> Binding:
    if not isinstance(raw, Mapping):
        raise ValueError("a binding must be a mapping")
    unknown = sorted(set(raw) - BINDING_KEYS)
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(BINDING_KEYS))})"
        )
    name = _text(raw, "name", required=True)
    event_type = _text(raw, "type", required=True)
    pipeline = _text(raw, "pipeline")
    ref = raw.get("pipelineRef")
    if (pipeline is None) == (ref is None):
        raise ValueError("give exactly one of 'pipeline' and 'pipelineRef'")
    if ref is not None and not isinstance(ref, Mapping):
        raise ValueError("'pipelineRef' must be a mapping")
    if pipeline is not None and not DNS_SUBDOMAIN.match(pipeline):
        raise ValueError(f"'pipeline' {pipeline!r} is not a valid object name")
    namespace = _text(raw, "namespace")
    if namespace is not None and not DNS_LABEL.match(namespace):
        raise ValueError(f"'namespace' {namespace!r} is not a DNS-1123 label")
    account = _text(raw, "serviceAccountName")
    if account is not None and not DNS_SUBDOMAIN.match(account):
        raise ValueError(f"'serviceAccountName' {account!r} is not a valid name")
    pod_template = raw.get("podTemplate")
    if pod_template is not None and not isinstance(pod_template, Mapping):
        raise ValueError("'podTemplate' must be a mapping")
    return Binding(
        name=name,
        type=event_type,
        pipeline=pipeline,
        pipeline_ref=dict(ref) if ref is not None else None,
        namespace=namespace,
        name_prefix=_text(raw, "namePrefix") or pipeline or str((ref or {}).get("name") or name),
        params=_params(raw.get("params")),
        workspaces=_workspaces(raw.get("workspaces")),
        service_account_name=account,
        pod_template=dict(pod_template) if pod_template is not None else None,
        timeouts=_timeouts(raw.get("timeouts")),
        labels=_templates(raw.get("labels"), "labels"),
        annotations=_templates(raw.get("annotations"), "annotations"),
    )


def _text(raw: Mapping[str, Any], key: str, *, required: bool = False) -> Any:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{key}' must be a non-empty string")
    return value


def _template(value: Any, where: str) -> Template:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string (quote numbers and booleans)")
    try:
        return Template.parse(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _params(raw: Any) -> tuple[Param, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("'params' must be a list of {name, value}")
    params: list[Param] = []
    for i, item in enumerate(raw):
        where = f"params[{i}]"
        if not isinstance(item, Mapping) or set(item) != {"name", "value"}:
            raise ValueError(f"{where} must have exactly 'name' and 'value'")
        name, value = item["name"], item["value"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name must be a non-empty string")
        where = f"params[{name}].value"
        parsed: ParamValue
        if isinstance(value, list):
            parsed = tuple(_template(v, f"{where}[{j}]") for j, v in enumerate(value))
        elif isinstance(value, Mapping):
            parsed = {str(k): _template(v, f"{where}.{k}") for k, v in value.items()}
        else:
            parsed = _template(value, where)
        params.append(Param(name, parsed))
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError("param names must be unique")
    return tuple(params)


def _workspaces(raw: Any) -> tuple[Mapping[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(w, Mapping) and w.get("name") for w in raw):
        raise ValueError(
            "'workspaces' must be a list of PipelineRun workspace bindings (with name)"
        )
    return tuple(dict(w) for w in raw)


def _timeouts(raw: Any) -> Mapping[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not set(raw) <= {"pipeline", "tasks", "finally"}:
        raise ValueError("'timeouts' takes pipeline, tasks and finally")
    for key, value in raw.items():
        if not isinstance(value, str) or not DURATION.match(value):
            raise ValueError(f"timeouts.{key} must be a Go duration such as 1h30m or 45s")
    return dict(raw)


def _templates(raw: Any, what: str) -> Mapping[str, Template] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"'{what}' must be a mapping")
    for key in raw:
        if not isinstance(key, str) or key_problem(key):
            raise ValueError(f"{what} key {key!r}: {key_problem(str(key))}")
        if key.startswith(RESERVED_PREFIXES):
            raise ValueError(f"{what} key {key!r} is reserved (cemesh.dev/ and tekton.dev/)")
    return {key: _template(value, f"{what}[{key}]") for key, value in raw.items()}


def key_problem(key: str) -> str | None:
    """Why `key` cannot be a label or annotation key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return "the prefix must be a DNS subdomain"
    if len(name) > 63 or not QUALIFIED_NAME.match(name):
        return "the name must be at most 63 alphanumerics, '-', '_', '.' (alphanumeric ends)"
    return None
