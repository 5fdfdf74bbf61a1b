"""Sync: render an environment from Git and make its cluster match.

Server-side apply (field manager ``shipline``) of only what changed, judged against the
per-environment inventory (each object's applied digest and resourceVersion) and the cluster's
live-state cache; phases and barriers (kluctl); prune through the inventory and, in kluctl mode,
the target's discriminator; ``delete: true``; drift detection and repair; rollout health.
Library code only: the actors and the API call ``sync_environment`` and ``diff_environment``.
"""

from handlers.sync.diff import ObjectDiff, diff_environment
from handlers.sync.kubeapi import kube_client
from handlers.sync.reconcile import SyncResult, sync_environment

__all__ = ["ObjectDiff", "SyncResult", "diff_environment", "kube_client", "sync_environment"]
