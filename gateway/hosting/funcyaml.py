"""`func.yaml`, read strictly, as the func CLI 1.23 writes it.

The official schema lives outside the repository (and outside an image), so the mesh checks
func.yaml with this model of it, written from the schema's facts: unknown keys are rejected at
every level we model, like the schema's `additionalProperties: false`. Tests cross-check every
func.yaml in the repo against the official schema too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brokers.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Env(_Strict):
    name: str | None = None
    value: str | None = None


class Subscription(_Strict):
    source: str
    filters: dict[str, str] = Field(default_factory=dict)


class Scale(_Strict):
    min: int | None = None
    max: int | None = None
    metric: str | None = None
    target: float | None = None
    utilization: float | None = None


class Options(_Strict):
    scale: Scale | None = None
    resources: dict[str, Any] | None = None


class Deploy(_Strict):
    namespace: str | None = None
    image: str | None = None
    annotations: dict[str, str] | None = None
    options: Options | None = None
    labels: list[dict[str, str]] | None = None
    healthEndpoints: dict[str, str] | None = None
    serviceAccountName: str | None = None
    imagePullSecret: str | None = None
    deployer: str | None = None
    subscriptions: list[Subscription] = Field(default_factory=list)
    managementDisabled: bool | None = None


class Run(_Strict):
    volumes: list[dict[str, Any]] | None = None
    envs: list[Env] = Field(default_factory=list)
    startTimeout: int | None = None
    kafka: dict[str, Any] | None = None


class Build(_Strict):
    git: dict[str, Any] | None = None
    builderImages: dict[str, str] | None = None
    buildpacks: list[str] | None = None
    builder: str | None = None
    buildEnvs: list[Env] | None = None
    pvcSize: str | None = None
    remoteStorageClass: str | None = None
    baseImage: str | None = None
    volumes: list[dict[str, Any]] | None = None


class FuncYaml(_Strict):
    specVersion: str
    created: str
    name: str | None = None
    domain: str | None = None
    runtime: str | None = None
    registry: str | None = None
    registryInsecure: bool | None = None
    image: str | None = None
    namespace: str | None = None
    deployer: str | None = None
    invoke: Literal["http", "cloudevent"] | None = None
    build: Build | None = None
    run: Run | None = None
    deploy: Deploy | None = None

    @property
    def envs(self) -> dict[str, str]:
        """`run.envs` with literal values (func's `{{ env:X }}` templates are resolved)."""
        out: dict[str, str] = {}
        for env in self.run.envs if self.run else []:
            if env.name and env.value is not None:
                value = env.value
                if value.startswith("{{") and value.endswith("}}"):
                    ref = value.strip("{} ").split(":", 1)
                    if len(ref) == 2 and ref[0].strip() == "env":
                        value = os.environ.get(ref[1].strip(), "")
                out[env.name] = value
        return out


def load_func_yaml(path: Path) -> FuncYaml:
    """Read and check a func.yaml; ConfigError names the file and the key at fault."""
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), None, f"cannot read func.yaml: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), None, "func.yaml must be a mapping")
    if raw.get("created") is not None and not isinstance(raw["created"], str):
        raw["created"] = str(raw["created"])  # YAML reads an unquoted timestamp as a datetime
    try:
        return FuncYaml.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(str(path), where, first["msg"].lower()) from None
