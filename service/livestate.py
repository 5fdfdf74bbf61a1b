"""The worker's live state: one cluster cache per cluster, and the drift watcher on top.

Where it lives: in each worker process (dramatiq forks its worker processes, and threads do not
survive a fork, so each process builds its caches after it boots). The threads of a process share
them; a second worker process has its own copy (under a kilobyte per object, so that is cheap:
``shipline_cache_bytes``), and the drift triggers of several processes are deduplicated in
Redis. A separate watcher process would need a way to hand live state to the syncs (they run in
the workers) and its own failover; this keeps one moving part.

The drift watcher subscribes to every cache. A watch event on an object an environment manages
schedules a check of that environment (debounced): its objects in the cache against its
inventory, with the same rules a sync uses (``handlers.sync.plan``). Drift (a field Shipline
owns changed, or the object deleted) asks for a sync within a second; the sync corrects or
reports it (``drift: correct | report``, and the flap guard).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from handlers.settings import ClusterConfig, EnvironmentConfig
from handlers.sync.cache import ClusterCache
from handlers.sync.inventory import Inventory, read_inventory
from handlers.sync.kubeapi import KubeApi, NotFound, kube_client
from handlers.sync.live import LiveObject
from handlers.sync.plan import decide

log = logging.getLogger("shipline.drift")
DEBOUNCE_SECONDS = 0.3
"""A burst of events for one environment (a rollout, an edit touching several objects) is one check."""
BUSY_RETRY_SECONDS = 1.0
"""While a sync of the environment runs, its own writes are not drift: check again after it."""

_caches: dict[tuple[str, str, bool], ClusterCache] = {}
_lock = threading.Lock()


def cluster_key(cluster: ClusterConfig) -> tuple[str, str, bool]:
    return (str(cluster.kubeconfig or ""), cluster.context or "", cluster.in_cluster)


def cluster_name(cluster: ClusterConfig) -> str:
    if cluster.in_cluster:
        return "in-cluster"
    return f"{cluster.context or 'default'}@{cluster.kubeconfig or '~/.kube/config'}"


def cache_for(cluster: ClusterConfig) -> ClusterCache:
    """This process's cache of ``cluster`` (made on first use; environments on one cluster share it)."""
    key = cluster_key(cluster)
    with _lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = ClusterCache(cluster_name(cluster), KubeApi(kube_client(cluster)))
        return cache


def caches() -> dict[str, ClusterCache]:
    with _lock:
        return {c.name: c for c in _caches.values()}


def stop_all() -> None:
    """Stop and forget every cache of this process (shutdown, tests)."""
    with _lock:
        for cache in _caches.values():
            cache.stop()
        _caches.clear()


class DriftWatcher:
    """Watches every configured environment's objects; ``on_drift(env, what)`` asks for a sync.
    ``busy(env)`` says whether a sync of ``env`` is running right now (anywhere)."""

    def __init__(self, environments: list[EnvironmentConfig], on_drift: Callable[[str, str], None],
                 busy: Callable[[str], bool]) -> None:
        self.environments = {e.name: e for e in environments}
        self.on_drift = on_drift
        self.busy = busy
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self.seen: dict[str, list[dict[str, Any]]] = {}
        """Per environment, the drift the watcher saw (what, when, by which event)."""

    def start(self) -> None:
        """Subscribe to each cluster's cache and watch the kinds each inventory lists (in the background)."""
        for cache in {id(c): c for c in (cache_for(e.cluster) for e in self.environments.values())}.values():
            cache.subscribe(self._event)
        threading.Thread(target=self._watch_inventories, name="drift-watch-start", daemon=True).start()

    def _watch_inventories(self) -> None:
        for env in self.environments.values():
            try:
                cache = cache_for(env.cluster)
                inventory = read_inventory(cache.api, env)
                for entry in inventory.entries if inventory else ():
                    cache.watch(cache.api.resource(entry.ref.api_version, entry.ref.kind), entry.ref.namespace, wait=0)
            except Exception as exc:  # noqa: BLE001 - the next sync registers what it applies
                log.warning("cannot watch %s yet: %s", env.name, exc)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    def _event(self, kind: str, live: LiveObject) -> None:
        if live.target in self.environments and not self._stopped:
            self.schedule(live.target, DEBOUNCE_SECONDS)

    def schedule(self, env_name: str, delay: float) -> None:
        with self._lock:
            if env_name in self._timers or self._stopped:
                return
            timer = self._timers[env_name] = threading.Timer(delay, self._check, args=(env_name,))
            timer.daemon = True
            timer.start()

    def _check(self, env_name: str) -> None:
        with self._lock:
            self._timers.pop(env_name, None)
        if self.busy(env_name):
            self.schedule(env_name, BUSY_RETRY_SECONDS)
            return
        env = self.environments[env_name]
        try:
            found = drifted(cache_for(env.cluster), env)
        except Exception as exc:  # noqa: BLE001 - the periodic reconcile is the safety net
            log.warning("drift check of %s failed: %s", env_name, exc)
            return
        if found:
            what = "; ".join(found[:5]) + (f" (+{len(found) - 5} more)" if len(found) > 5 else "")
            self.seen.setdefault(env_name, []).append({"at": time.time(), "what": found[:20]})
            log.info("drift seen", extra={"environment": env_name, "objects": len(found)})
            self.on_drift(env_name, what)


def drifted(cache: ClusterCache, env: EnvironmentConfig) -> list[str]:
    """The objects of ``env`` whose live state moved away from its inventory ("" when none)."""
    inventory: Inventory | None = read_inventory(cache.api, env)
    if inventory is None:
        return []
    found = []
    view = cache.view(wait=0)
    for entry in inventory.entries:
        if not entry.digest:
            continue
        try:
            live = view.get(entry.ref)
        except NotFound:
            continue
        verdict = decide(entry.digest, entry, live)
        if verdict in ("drift", "deleted"):
            found.append(f"{entry.ref} {'deleted' if verdict == 'deleted' else 'changed'}")
    return found
