"""The lab's add-ons: long-running processes beside the cluster, on loopback ports, started on demand.

``labkit up`` starts only the core cluster; ``labkit up --with prometheus`` or a lesson's
``lk.addons.require("prometheus")`` starts add-ons (several at once, concurrently) and reuses running ones;
``labkit down`` stops them all and leaves no process. Adding one is one module with one :class:`Addon` subclass,
listed in :data:`REGISTRY` (:mod:`.registry`); :mod:`.supervisor` runs them.
"""

from __future__ import annotations

from .base import Addon
from .registry import REGISTRY, all_components, prefetch, with_cluster
from .supervisor import AddonStatus, addons_dir, export_urls, require, start, status, stop, url, url_variables

__all__ = ["REGISTRY", "Addon", "AddonStatus", "addons_dir", "all_components", "export_urls", "prefetch", "require",
           "start", "status", "stop", "url", "url_variables", "with_cluster"]
