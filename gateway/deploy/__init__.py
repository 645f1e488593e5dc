"""Rendering the mesh for a cluster: Knative (broker class, eventing-rabbitmq) and standalone
manifests, validated against the CRDs. render.py is the entry point that picks a target,
knative.py and standalone.py are the targets, manifests.py what they share.

Public names are re-exported lazily (gateway/lazy.py).
"""

from __future__ import annotations

from gateway.lazy import exports

_EXPORTS: dict[str, str] = {
    "DEFAULT_IMAGE": "manifests",
    "Degradation": "manifests",
    "RenderOptions": "manifests",
    "Rendered": "manifests",
    "dump": "manifests",
    "dump_all": "manifests",
    "exact_only": "knative",
    "iso_duration": "manifests",
    "mesh_config_documents": "standalone",
    "render": "render",
    "render_knative": "knative",
    "render_standalone": "standalone",
    "write": "render",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports(__name__, _EXPORTS)
