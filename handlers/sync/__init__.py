"""Sync: render an environment from Git and make its cluster match.

Server-side apply (field manager ``shipline``), prune through a per-target inventory, drift
detection and repair, and rollout health. Library code only: the actor and the API call
``sync_environment`` and ``diff_environment``.
"""

from handlers.sync.diff import ObjectDiff, diff_environment
from handlers.sync.kubeapi import kube_client
from handlers.sync.reconcile import SyncResult, sync_environment

__all__ = ["ObjectDiff", "SyncResult", "diff_environment", "kube_client", "sync_environment"]
