"""Rendering the mesh for a cluster: Knative (broker class, eventing-rabbitmq) and standalone
manifests, validated against the CRDs.

Public names are re-exported lazily (PEP 562), so importing one module of the package does
not import the others (no import cycles through this file).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Degradation": "render",
    "RenderOptions": "render",
    "Rendered": "render",
    "dump": "render",
    "dump_all": "render",
    "exact_only": "render",
    "iso_duration": "render",
    "mesh_config_documents": "render",
    "render": "render",
    "render_knative": "render",
    "render_standalone": "render",
    "write": "render",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
