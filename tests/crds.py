"""Check Kubernetes objects the way a cluster would, without a cluster.

No kube-apiserver can run here (DESIGN section 7), so every manifest we ship or generate is
checked against what the apiserver itself would enforce:

- Custom resources (Tekton, Knative, RabbitMQ operators): the `openAPIV3Schema` of the CRD
  copied from upstream into `../shared/crds/` (or `$CEMESH_SHARED/crds`), for the version named
  by the object's `apiVersion` (which must be served). Types, `required`, `enum`, `pattern`,
  int-or-string and `nullable` go through `jsonschema`; unknown fields are found by walking the
  structural schema: a field is unknown unless its node declares it, has `additionalProperties`,
  or is `x-kubernetes-preserve-unknown-fields`. A real apiserver *prunes* unknown fields by
  default (or answers 400 with `fieldValidation=Strict`); either way the field is lost, so here
  it is an error. Knative eventing objects are stricter still: their webhook decodes with
  DisallowUnknownFields, so a preserve-unknown node that lists properties (Trigger `spec`,
  `spec.delivery`) is treated as closed for them (crds/README.md). `x-kubernetes-list-type:
  map` keys must be unique, like the apiserver checks. CEL rules and defaults are not applied.
- Built-in kinds (ServiceAccount, Role, RoleBinding, ConfigMap, Deployment, Service, ...): the
  `kubernetes` client's models, which are generated from the cluster's OpenAPI and validate as
  strict pydantic models (unknown fields, required fields, types), plus the semantic rules the
  apiserver adds that a schema cannot say (RBAC references, selector vs template labels,
  ConfigMap keys, Service types). A kind is built-in when the client has an API for it.
- Every object: `metadata` as `ObjectMeta` (unknown keys rejected), name or generateName,
  name syntax per kind, label and annotation syntax.

`validate(obj)` raises `ManifestError` listing every problem; `problems(obj)` returns them. When
the shared CRDs are absent the check skips the calling test, naming where it looked.
`SchemaValidator` is also what `tests/fakekube` answers 422 with.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema
import kubernetes.client
import pydantic
import pytest
import yaml

REPO: Final = Path(__file__).resolve().parents[1]
SHARED_ENV: Final = "CEMESH_SHARED"
STRICT_WEBHOOK_GROUPS: Final = frozenset(
    {"eventing.knative.dev", "messaging.knative.dev", "sources.knative.dev", "flows.knative.dev"}
)
"""Groups whose admission webhook rejects unknown fields even under preserve-unknown nodes."""
WEBHOOK_FIELDS: Final = frozenset(
    {("delivery", "timeout"), ("delivery", "retryAfterMax"), ("delivery", "format")}
)
"""(parent key, key) the eventing webhook knows although the CRD leaves them to preserve-unknown:
knative's DeliverySpec Go struct has `timeout` (beta, on by default), `retryAfterMax`, `format`."""

BUILTIN_GROUPS: Final = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
    }
)

DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
QUALIFIED_NAME: Final = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CONFIG_KEY: Final = re.compile(r"^[-._a-zA-Z0-9]+$")
ANNOTATIONS_MAX_BYTES: Final = 256 * 1024
QUANTITY_MAPS: Final = frozenset({"limits", "requests", "hard", "capacity", "overhead"})


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing the apiserver would reject, with its Kubernetes cause type as `reason`."""

    field: str
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


class ManifestError(ValueError):
    """An object a cluster would refuse; the message lists every problem."""

    def __init__(self, label: str, problems: Sequence[Problem]) -> None:
        self.label = label
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{label} is invalid:\n{lines}")


@dataclass(frozen=True, slots=True)
class CRDVersion:
    name: str
    served: bool
    storage: bool
    schema: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class CRD:
    group: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    versions: Mapping[str, CRDVersion]
    origin: Path

    @property
    def storage_version(self) -> str:
        return next(v.name for v in self.versions.values() if v.storage)


# ---------------------------------------------------------------- where the CRDs are


def shared_dir() -> Path | None:
    """`$CEMESH_SHARED`, else `../shared` next to the repository; None when absent."""
    path = Path(os.environ.get(SHARED_ENV) or REPO.parent / "shared")
    return path if (path / "crds").is_dir() else None


def require_shared() -> Path:
    """The shared directory, or skip the calling test saying where it looked."""
    path = shared_dir()
    if path is None:
        where = os.environ.get(SHARED_ENV) or REPO.parent / "shared"
        pytest.skip(f"upstream CRDs not found under {where}/crds (set {SHARED_ENV})")
    return path


@functools.cache
def load_crds(root: Path) -> Mapping[tuple[str, str], CRD]:
    """Every CustomResourceDefinition under `root/crds`, keyed by (group, kind)."""
    found: dict[tuple[str, str], CRD] = {}
    for path in sorted((root / "crds").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text("utf-8")):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            names = spec["names"]
            versions = {
                v["name"]: CRDVersion(
                    v["name"],
                    bool(v.get("served")),
                    bool(v.get("storage")),
                    (v.get("schema") or {}).get("openAPIV3Schema"),
                )
                for v in spec["versions"]
            }
            found[(spec["group"], names["kind"])] = CRD(
                spec["group"],
                names["kind"],
                names["plural"],
                names.get("singular") or names["kind"].lower(),
                spec.get("scope", "Namespaced") == "Namespaced",
                versions,
                path,
            )
    return found


def split_api_version(api_version: str) -> tuple[str, str]:
    """`tekton.dev/v1` -> (`tekton.dev`, `v1`); `v1` -> (``, `v1`)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def crd_for(api_version: str, kind: str) -> tuple[CRD, CRDVersion] | None:
    """The CRD and version that serve `apiVersion`/`kind`; None when no shared CRD has it."""
    group, version = split_api_version(api_version)
    crd = load_crds(require_shared()).get((group, kind))
    if crd is None or version not in crd.versions:
        return None
    return crd, crd.versions[version]


# ---------------------------------------------------------------- CRD schemas

_KEEP: Final = frozenset(
    {
        "type",
        "required",
        "enum",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "uniqueItems",
        "multipleOf",
        "minProperties",
        "maxProperties",
    }
)


def to_jsonschema(node: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema node as JSON Schema (draft 4), open to unknown keys.

    Unknown keys are the walker's business (`unknown_fields`), because whether one is allowed
    depends on preserve-unknown semantics JSON Schema cannot express.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = to_jsonschema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_jsonschema(sub) for sub in value]
        elif key in _KEEP:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def field_path(parts: Iterable[str | int]) -> str:
    """`("spec", "params", 0, "name")` -> `spec.params[0].name`."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _show(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)[:200]


class SchemaValidator:
    """One CRD version's `openAPIV3Schema`, checked the way the apiserver applies it."""

    def __init__(self, schema: Mapping[str, Any], *, strict_webhook: bool = False) -> None:
        properties = dict(schema.get("properties") or {})
        # Every object has these three whatever the CRD lists; the apiserver validates
        # ObjectMeta itself, so the CRD's `metadata: {type: object}` must not close it.
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        self.schema: Mapping[str, Any] = {**schema, "properties": properties}
        self.strict_webhook = strict_webhook
        self._validator = jsonschema.Draft4Validator(to_jsonschema(self.schema))

    def problems(self, obj: Mapping[str, Any]) -> list[Problem]:
        """Type, required, enum, pattern... problems, then unknown fields and duplicates."""
        found = [_schema_problem(error) for error in self._validator.iter_errors(obj)]
        flat = [problem for group in found for problem in group]
        walk = _Walk(self.strict_webhook, prune=False)
        walk.visit(self.schema, obj, ())
        return sorted(flat, key=lambda p: p.field) + walk.problems

    def unknown_fields(self, obj: Mapping[str, Any]) -> list[str]:
        walk = _Walk(self.strict_webhook, prune=False)
        walk.visit(self.schema, obj, ())
        return [p.field for p in walk.problems if p.reason == "FieldValueUnknown"]

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Drop unknown fields from `obj` in place, like the apiserver; return their paths."""
        walk = _Walk(self.strict_webhook, prune=True)
        walk.visit(self.schema, obj, ())
        return [p.field for p in walk.problems if p.reason == "FieldValueUnknown"]


def _schema_problem(error: jsonschema.ValidationError) -> list[Problem]:
    path = list(error.absolute_path)
    where = field_path(path)
    rule: Any = error.validator_value
    if error.validator == "required":
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        return [
            Problem(field_path([*path, name]), "FieldValueRequired", "Required value")
            for name in rule
            if name not in instance
        ]
    if error.validator == "type":
        expected = rule
        return [
            Problem(
                where,
                "FieldValueTypeInvalid",
                f"Invalid value: {_show(error.instance)}: must be of type {expected}",
            )
        ]
    if error.validator == "enum":
        supported = ", ".join(_show(v) for v in rule)
        return [
            Problem(
                where,
                "FieldValueNotSupported",
                f"Unsupported value: {_show(error.instance)}: supported values: {supported}",
            )
        ]
    if error.validator == "anyOf" and rule == [
        {"type": "integer"},
        {"type": "string"},
    ]:
        return [
            Problem(
                where,
                "FieldValueTypeInvalid",
                f"Invalid value: {_show(error.instance)}: must be an integer or a string",
            )
        ]
    return [
        Problem(
            where, "FieldValueInvalid", f"Invalid value: {_show(error.instance)}: {error.message}"
        )
    ]


class _Walk:
    """Finds (and optionally prunes) unknown fields; checks list-map key uniqueness."""

    def __init__(self, strict_webhook: bool, *, prune: bool) -> None:
        self.strict_webhook = strict_webhook
        self.prune = prune
        self.problems: list[Problem] = []

    def visit(self, schema: Any, value: Any, path: tuple[str | int, ...]) -> None:
        if not isinstance(schema, Mapping):
            return
        if isinstance(value, dict):
            self._object(schema, value, path)
        elif isinstance(value, list):
            items = schema.get("items")
            self._list_keys(schema, value, path)
            for index, item in enumerate(value):
                self.visit(items, item, (*path, index))

    def _object(
        self, schema: Mapping[str, Any], value: dict[str, Any], path: tuple[Any, ...]
    ) -> None:
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        embedded = schema.get("x-kubernetes-embedded-resource") is True
        if not isinstance(properties, Mapping):
            if isinstance(extra, Mapping):
                for key, item in value.items():
                    self.visit(extra, item, (*path, key))
                return
            if preserve or extra is True or schema.get("type") != "object":
                return  # no properties at all: anything goes
            properties = {}
        open_ = extra is True or (preserve and not self.strict_webhook)
        for key in list(value):
            if key in properties:
                self.visit(properties[key], value[key], (*path, key))
            elif isinstance(extra, Mapping):
                self.visit(extra, value[key], (*path, key))
            elif open_ or self._allowed(key, path, preserve=preserve, embedded=embedded):
                continue
            else:
                where = field_path((*path, key))
                self.problems.append(
                    Problem(where, "FieldValueUnknown", f'unknown field "{where}"')
                )
                if self.prune:
                    del value[key]

    @staticmethod
    def _allowed(key: str, path: tuple[Any, ...], *, preserve: bool, embedded: bool) -> bool:
        """Undeclared but accepted: an embedded object's header, a webhook-known field."""
        if embedded and key in ("apiVersion", "kind", "metadata"):
            return True
        return preserve and bool(path) and (path[-1], key) in WEBHOOK_FIELDS

    def _list_keys(
        self, schema: Mapping[str, Any], value: list[Any], path: tuple[Any, ...]
    ) -> None:
        if schema.get("x-kubernetes-list-type") != "map":
            return
        keys = list(schema.get("x-kubernetes-list-map-keys") or [])
        seen: set[str] = set()
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                continue
            key = _show({k: item.get(k) for k in keys})
            if key in seen:
                self.problems.append(
                    Problem(
                        field_path((*path, index)), "FieldValueDuplicate", f"Duplicate value: {key}"
                    )
                )
            seen.add(key)


@functools.cache
def _validator_for(api_version: str, kind: str) -> SchemaValidator | None:
    found = crd_for(api_version, kind)
    if found is None or found[1].schema is None:
        return None
    crd, _ = found
    return SchemaValidator(found[1].schema, strict_webhook=crd.group in STRICT_WEBHOOK_GROUPS)


def schema_validator(api_version: str, kind: str) -> SchemaValidator:
    """The validator of a shared CRD's version; KeyError when there is none."""
    validator = _validator_for(api_version, kind)
    if validator is None:
        raise KeyError(f"no CRD schema for {api_version} {kind} under {require_shared()}/crds")
    return validator


# ---------------------------------------------------------------- metadata, every object


def _required(field: str, detail: str = "Required value") -> Problem:
    return Problem(field, "FieldValueRequired", detail)


def _invalid(field: str, value: Any, why: str) -> Problem:
    return Problem(field, "FieldValueInvalid", f"Invalid value: {_show(value)}: {why}")


def _unsupported(field: str, value: Any, supported: Sequence[str]) -> Problem:
    allowed = ", ".join(_show(s) for s in supported)
    return Problem(
        field,
        "FieldValueNotSupported",
        f"Unsupported value: {_show(value)}: supported values: {allowed}",
    )


def _name_rule(group: str, kind: str) -> tuple[str, re.Pattern[str], int] | None:
    """(description, pattern, max length) of metadata.name; None for RBAC's path segments."""
    if group == "rbac.authorization.k8s.io":
        return None
    if (group, kind) == ("", "Namespace") or group == "tekton.dev":
        # Tekton's webhook: at most 63 characters, no dots (run names become label values).
        return "a DNS-1123 label", DNS_LABEL, 63
    if (group, kind) in (("", "Service"), ("serving.knative.dev", "Service")):
        return "a DNS-1035 label", DNS_1035, 63
    return "a DNS-1123 subdomain", DNS_SUBDOMAIN, 253


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid label or annotation key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return "prefix part must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        return (
            "name part must be at most 63 alphanumerics, '-', '_' or '.', alphanumeric at both ends"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None."""
    if len(value) > 63 or not LABEL_VALUE.match(value):
        return (
            "a label value must be empty or at most 63 alphanumerics, '-', '_' or '.', "
            "alphanumeric at both ends"
        )
    return None


def _name_problems(meta: Mapping[str, Any], group: str, kind: str) -> list[Problem]:
    name, generate = meta.get("name"), meta.get("generateName")
    if not name and not generate:
        return [_required("metadata.name", "name or generateName is required")]
    rule = _name_rule(group, kind)
    found: list[Problem] = []
    if isinstance(name, str) and name:
        if rule is None:
            if name in (".", "..") or "/" in name or "%" in name:
                found.append(
                    _invalid("metadata.name", name, "may not be '.', '..' or contain '/' or '%'")
                )
        elif len(name) > rule[2] or not rule[1].match(name):
            found.append(
                _invalid(
                    "metadata.name", name, f"must be {rule[0]} of at most {rule[2]} characters"
                )
            )
    stem = generate.rstrip("-.") if isinstance(generate, str) else ""
    if generate and rule is not None and (len(stem) > rule[2] or not rule[1].match(stem or "-")):
        found.append(_invalid("metadata.generateName", generate, f"must be a prefix of {rule[0]}"))
    return found


def metadata_problems(
    obj: Mapping[str, Any], *, namespaced: bool | None = None, check_model: bool = True
) -> list[Problem]:
    """ObjectMeta as the apiserver validates it for any kind."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return [_required("metadata")]
    found: list[Problem] = []
    if check_model:
        found += _model_problems(kubernetes.client.V1ObjectMeta, meta, ("metadata",))
    group, _ = split_api_version(str(obj.get("apiVersion", "")))
    found += _name_problems(meta, group, str(obj.get("kind", "")))
    namespace = meta.get("namespace")
    if namespace is not None and namespaced is False:
        found.append(
            Problem(
                "metadata.namespace",
                "FieldValueForbidden",
                "not allowed on a cluster-scoped object",
            )
        )
    elif namespace is not None and (
        not isinstance(namespace, str) or not DNS_LABEL.match(namespace) or len(namespace) > 63
    ):
        found.append(_invalid("metadata.namespace", namespace, "must be a DNS-1123 label"))
    for key, value in (meta.get("labels") or {}).items():
        where = f"metadata.labels[{key}]"
        if why := label_key_problem(str(key)):
            found.append(_invalid(where, key, why))
        if not isinstance(value, str):
            found.append(_invalid(where, value, "must be a string"))
        elif why := label_value_problem(value):
            found.append(_invalid(where, value, why))
    annotations = meta.get("annotations") or {}
    for key, value in annotations.items():
        where = f"metadata.annotations[{key}]"
        if why := label_key_problem(str(key)):
            found.append(_invalid(where, key, why))
        if not isinstance(value, str):
            found.append(_invalid(where, value, "must be a string"))
    if sum(len(str(k)) + len(str(v)) for k, v in annotations.items()) > ANNOTATIONS_MAX_BYTES:
        found.append(
            Problem(
                "metadata.annotations",
                "FieldValueTooLong",
                f"must have at most {ANNOTATIONS_MAX_BYTES} bytes",
            )
        )
    return _unique(found)


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


# ---------------------------------------------------------------- built-in kinds


def _snake(kind: str) -> str:
    words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", kind)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", words).lower()


def builtin_kind(api_version: str, kind: str) -> tuple[type[Any], bool] | None:
    """(client model class, namespaced) when the client has an API serving this kind."""
    group, version = split_api_version(api_version)
    if group not in BUILTIN_GROUPS or not version:
        return None
    words = (
        [w.capitalize() for w in group.removesuffix(".k8s.io").split(".")] if group else ["Core"]
    )
    api = getattr(kubernetes.client, "".join(words) + version.capitalize() + "Api", None)
    model = getattr(kubernetes.client, version.capitalize() + kind, None)
    if api is None or model is None:
        return None
    snake = _snake(kind)
    if hasattr(api, f"create_namespaced_{snake}"):
        return model, True
    if hasattr(api, f"create_{snake}"):
        return model, False
    return None


def _model_problems(
    model: type[Any], value: Any, prefix: tuple[str | int, ...] = ()
) -> list[Problem]:
    """The client model's own (strict pydantic) validation, as Problems."""
    try:
        model.model_validate(value)
    except pydantic.ValidationError as exc:
        found = []
        for error in exc.errors():
            loc = (*prefix, *error["loc"])
            where, kind, given = field_path(loc), error["type"], error.get("input")
            quantity = len(loc) >= 2 and loc[-2] in QUANTITY_MAPS
            if kind == "string_type" and quantity and type(given) in (int, float):
                continue  # a Quantity may be written as a number
            if kind == "extra_forbidden":
                found.append(Problem(where, "FieldValueUnknown", f'unknown field "{where}"'))
            elif kind == "missing":
                found.append(_required(where))
            else:
                found.append(_invalid(where, given, error["msg"]))
        return found
    return []


def _rbac_problems(kind: str, obj: Mapping[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    for i, rule in enumerate(obj.get("rules") or []):
        if not rule.get("verbs"):
            found.append(_required(f"rules[{i}].verbs", "verbs must contain at least one value"))
        if rule.get("resources") and not rule.get("apiGroups"):
            found.append(
                _required(f"rules[{i}].apiGroups", "resource rules must supply an api group")
            )
        if kind == "Role" and rule.get("nonResourceURLs"):
            found.append(
                _invalid(f"rules[{i}].nonResourceURLs", rule["nonResourceURLs"], "not in a Role")
            )
    if kind.endswith("Binding"):
        ref = obj.get("roleRef") or {}
        kinds = ["Role", "ClusterRole"] if kind == "RoleBinding" else ["ClusterRole"]
        if ref.get("apiGroup") != "rbac.authorization.k8s.io":
            found.append(
                _unsupported("roleRef.apiGroup", ref.get("apiGroup"), ["rbac.authorization.k8s.io"])
            )
        if ref.get("kind") not in kinds:
            found.append(_unsupported("roleRef.kind", ref.get("kind"), kinds))
    for i, subject in enumerate(obj.get("subjects") or []):
        skind = subject.get("kind")
        if skind not in ("ServiceAccount", "User", "Group"):
            found.append(
                _unsupported(f"subjects[{i}].kind", skind, ["ServiceAccount", "User", "Group"])
            )
        if skind == "ServiceAccount" and subject.get("apiGroup", ""):
            found.append(_unsupported(f"subjects[{i}].apiGroup", subject["apiGroup"], [""]))
        if (
            skind == "ServiceAccount"
            and kind == "ClusterRoleBinding"
            and not subject.get("namespace")
        ):
            found.append(_required(f"subjects[{i}].namespace"))
    return found


def _workload_problems(kind: str, spec: Mapping[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    template = spec.get("template") or {}
    if kind != "Pod" and kind != "Job":
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            found.append(
                _invalid(
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                )
            )
    pod, prefix = (
        (spec, "spec") if kind == "Pod" else (template.get("spec") or {}, "spec.template.spec")
    )
    names = [c.get("name") for c in pod.get("containers") or []]
    for i, name in enumerate(names):
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            found.append(
                _invalid(f"{prefix}.containers[{i}].name", name, "must be a DNS-1123 label")
            )
        elif names.index(name) != i:
            found.append(
                Problem(
                    f"{prefix}.containers[{i}].name",
                    "FieldValueDuplicate",
                    f"Duplicate value: {_show(name)}",
                )
            )
    return found


def _builtin_semantics(kind: str, obj: Mapping[str, Any]) -> list[Problem]:
    """Rules the apiserver's validation adds on top of the types."""
    raw_spec = obj.get("spec")
    spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
    if kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
        return _rbac_problems(kind, obj)
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"):
        return _workload_problems(kind, spec)
    found: list[Problem] = []
    if kind in ("ConfigMap", "Secret"):
        data = obj.get("data") or {}
        other = obj.get("binaryData" if kind == "ConfigMap" else "stringData") or {}
        for key in [*data, *other]:
            if len(key) > 253 or not CONFIG_KEY.match(key):
                found.append(
                    _invalid(
                        f"data[{key}]", key, "a config key must be alphanumerics, '-', '_' or '.'"
                    )
                )
        if kind == "ConfigMap":
            found += [
                Problem(f"binaryData[{k}]", "FieldValueDuplicate", "also a data key")
                for k in set(data) & set(other)
            ]
    if kind == "Service":
        types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
        if spec.get("type", "ClusterIP") not in types:
            found.append(_unsupported("spec.type", spec.get("type"), types))
        ports = spec.get("ports") or []
        for i, port in enumerate(ports):
            if port.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                found.append(
                    _unsupported(
                        f"spec.ports[{i}].protocol", port.get("protocol"), ["TCP", "UDP", "SCTP"]
                    )
                )
            if not isinstance(port.get("port"), int) or not 1 <= port["port"] <= 65535:
                found.append(
                    _invalid(
                        f"spec.ports[{i}].port", port.get("port"), "must be between 1 and 65535"
                    )
                )
            if len(ports) > 1 and not port.get("name"):
                found.append(_required(f"spec.ports[{i}].name"))
    return found


# ---------------------------------------------------------------- the entry points


def label_of(obj: Mapping[str, Any]) -> str:
    raw = obj.get("metadata")
    meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    name = meta.get("name") or meta.get("generateName") or "(unnamed)"
    return f"{obj.get('apiVersion', '?')} {obj.get('kind', '?')} {name}"


def problems(obj: Mapping[str, Any]) -> list[Problem]:
    """Everything a cluster would reject in `obj` (empty when it would be accepted)."""
    if not isinstance(obj, Mapping):
        return [Problem("", "FieldValueInvalid", "a manifest must be a mapping")]
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not api_version:
        return [Problem("apiVersion", "FieldValueRequired", "Required value")]
    if not isinstance(kind, str) or not kind:
        return [Problem("kind", "FieldValueRequired", "Required value")]
    builtin = builtin_kind(api_version, kind)
    if builtin is not None:
        model, namespaced = builtin
        found = _model_problems(model, obj)
        found += metadata_problems(obj, namespaced=namespaced, check_model=False)
        return _unique(found + _builtin_semantics(kind, obj))
    group, version = split_api_version(api_version)
    crd = load_crds(require_shared()).get((group, kind))
    if crd is None:
        return [
            Problem(
                "kind",
                "FieldValueNotSupported",
                f"no schema for {api_version} {kind}: not a built-in kind "
                f"and no CRD under {require_shared()}/crds",
            )
        ]
    if version not in crd.versions or not crd.versions[version].served:
        served = ", ".join(v.name for v in crd.versions.values() if v.served)
        return [
            Problem(
                "apiVersion",
                "FieldValueNotSupported",
                f"{api_version} is not served for {kind} (served: {served})",
            )
        ]
    found = metadata_problems(obj, namespaced=crd.namespaced)
    validator = _validator_for(api_version, kind)
    if validator is not None:
        found += validator.problems(obj)
    return _unique(found)


def validate(obj: Mapping[str, Any]) -> None:
    """Raise `ManifestError` listing every problem a cluster would reject `obj` for."""
    found = problems(obj)
    if found:
        raise ManifestError(label_of(obj), found)


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc is not None]
