"""A live-state cache per cluster: list + watch of what Shipline manages, in memory.

One ``ClusterCache`` per cluster, shared by every environment that syncs to it. A scope is a
(resource, namespace) pair — a namespaced kind is watched per namespace, so a service account
allowed only in its environments' namespaces suffices — and each scope has one thread that
lists the objects labelled ``shipline.dev/target`` and then watches from the list's
resourceVersion with the ``kubernetes`` client's ``Watch`` (bookmarks on). A broken watch
resumes from the last resourceVersion it saw; ``410 Gone`` relists. Only a ``LiveObject`` summary
is kept per object (see ``handlers.sync.live``).

Listeners get every change (``ADDED``/``MODIFIED``/``DELETED``) from the watch thread: the drift
watcher uses it to see a manual edit within seconds. A sync asks ``get(ref)``: from memory when
the scope is synced, else it says so and the caller reads the API server.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import urllib3
from kubernetes import watch
from kubernetes.client.rest import ApiException

from handlers.sync.kubeapi import Forbidden, KubeApi, NotFound, Resource
from handlers.sync.live import LiveObject, summarize, summary_bytes
from handlers.sync.objects import LABEL_TARGET, ObjRef, ref_of

log = logging.getLogger("shipline.cache")
WATCH_TIMEOUT_SECONDS = 240
"""Server-side timeout of one watch request; the thread re-watches from its resourceVersion."""
LAGGING_AFTER_SECONDS = WATCH_TIMEOUT_SECONDS + 60
"""No event, bookmark or re-watch for this long: the scope is reported lagging."""
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
SYNC_WAIT_SECONDS = 10.0
State = Literal["listing", "synced", "relisting", "disconnected", "stopped"]
Listener = Callable[[str, LiveObject], None]
"""``(event type, object)``: called on the scope's thread; keep it short."""


@dataclass
class Scope:
    """One watched (resource, namespace): its thread's state and the objects it saw."""

    resource: Resource
    namespace: str
    state: State = "listing"
    resource_version: str = ""
    last_seen: float = field(default_factory=time.monotonic)
    relists: int = 0
    error: str = ""
    forbidden: bool = False
    """The list was refused (403): a namespaced kind is then watched per namespace instead."""
    synced: threading.Event = field(default_factory=threading.Event)
    keys: set[tuple[str, str, str, str]] = field(default_factory=set)

    @property
    def name(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.resource.plural}.{self.resource.api_version}{where}"

    def status(self) -> dict[str, Any]:
        state = self.state
        if state == "synced" and time.monotonic() - self.last_seen > LAGGING_AFTER_SECONDS:
            state = "lagging"  # type: ignore[assignment]
        return {"scope": self.name, "state": state, "objects": len(self.keys), "relists": self.relists,
                "error": self.error}


class ClusterCache:
    """Live state of one cluster; ``api`` is used for lists, watches and discovery."""

    def __init__(self, name: str, api: KubeApi) -> None:
        self.name = name
        self.api = api
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str, str, str], LiveObject] = {}
        self._entry_bytes = 0
        """What the summaries in ``_objects`` and their keys hold (``footprint``), kept per change."""
        self._scopes: dict[tuple[str, str, str], Scope] = {}
        self._listeners: list[Listener] = []
        self._stop = threading.Event()

    # -- what syncs and the drift watcher call --------------------------------------------
    def watch(self, resource: Resource, namespace: str, wait: float = SYNC_WAIT_SECONDS) -> Scope:
        """The scope that covers ``resource`` in ``namespace``, started on first use: one watch over
        all namespaces when the credentials may list them, else one per namespace."""
        if resource.namespaced and namespace:
            everywhere = self._scope(resource, "")
            if everywhere.state == "listing":
                everywhere.synced.wait(wait)
            if not everywhere.forbidden:
                return everywhere
        return self._scope(resource, namespace if resource.namespaced else "")

    def _scope(self, resource: Resource, namespace: str) -> Scope:
        key = (resource.api_version, resource.plural, namespace)
        with self._lock:
            scope = self._scopes.get(key)
            if scope is None:
                scope = self._scopes[key] = Scope(resource, namespace)
                threading.Thread(target=self._run, args=(scope,), daemon=True,
                                 name=f"watch {self.name} {scope.name}").start()
        return scope

    def get(self, ref: ObjRef) -> LiveObject | None:
        """From memory; the caller made sure ``watch(...)`` of its scope is synced."""
        return self._objects.get(ref.key)

    def view(self, wait: float = SYNC_WAIT_SECONDS) -> CacheView:
        return CacheView(self, wait)

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.status() for s in self._scopes.values()]

    def objects_of(self, target: str) -> list[LiveObject]:
        return [o for o in list(self._objects.values()) if o.target == target]

    def __len__(self) -> int:
        return len(self._objects)

    def footprint(self) -> int:
        """Bytes the cache holds: every summary and its key, the table of them and each scope's
        set of keys (what the watch's events cost to keep, not the process around it)."""
        with self._lock:
            tables = sys.getsizeof(self._objects) + sum(sys.getsizeof(s.keys) for s in self._scopes.values())
            return self._entry_bytes + tables

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for scope in self._scopes.values():
                scope.state = "stopped"

    # -- the scope's thread ---------------------------------------------------------------
    def _run(self, scope: Scope) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if not scope.resource_version:
                    self._list(scope)
                self._stream(scope)
                failures = 0
            except Forbidden as exc:
                scope.forbidden, scope.state, scope.error = True, "stopped", str(exc)[:300]
                scope.synced.set()  # whoever waits for it learns it will not come
                return
            except ApiException as exc:
                if exc.status == 403:
                    scope.forbidden, scope.state, scope.error = True, "stopped", f"403 {exc.reason}"
                    scope.synced.set()
                    return
                if exc.status == 410:  # our resourceVersion is too old: start over from a list
                    scope.resource_version, scope.state = "", "relisting"
                    scope.relists += 1
                    continue
                failures = self._failed(scope, f"{exc.status} {exc.reason}", failures)
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                failures = self._failed(scope, f"{type(exc).__name__}: {exc}", failures)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any surprise; it retries
                log.exception("watch %s failed", scope.name)
                failures = self._failed(scope, f"{type(exc).__name__}: {exc}", failures)

    def _failed(self, scope: Scope, error: str, failures: int) -> int:
        scope.state, scope.error = "disconnected", error[:300]
        self._stop.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
        return failures + 1

    def _list(self, scope: Scope) -> None:
        listing = self.api.request("GET", scope.resource.path(scope.namespace),
                                   query={"labelSelector": LABEL_TARGET})
        typed = ({"apiVersion": scope.resource.api_version, "kind": scope.resource.kind, **item}
                 for item in listing.get("items") or [])  # list items carry no apiVersion or kind
        fresh = {ref_of(item).key: summarize(item) for item in typed}
        with self._lock:
            gone = scope.keys - set(fresh)
            for key in gone:
                self._drop(key)
            for key, live in fresh.items():
                self._put(key, live)
            scope.keys = set(fresh)
        scope.resource_version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
        scope.state, scope.error, scope.last_seen = "synced", "", time.monotonic()
        scope.synced.set()
        for key in gone:  # deleted while we were not watching
            self._tell("DELETED", LiveObject(ObjRef("", key[1], key[2], key[3]), "", 0, "", ""))

    def _stream(self, scope: Scope) -> None:
        w = watch.Watch()
        stream = w.stream(self._watch_call(scope), resource_version=scope.resource_version,
                          timeout_seconds=WATCH_TIMEOUT_SECONDS, allow_watch_bookmarks=True)
        try:
            for event in stream:
                if self._stop.is_set():
                    break
                self._apply_event(scope, event)
        finally:
            w.stop()
        scope.last_seen = time.monotonic()  # the server ended the watch on time: we were live until now

    def _apply_event(self, scope: Scope, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("raw_object") or {}
        meta = obj.get("metadata") or {}
        scope.resource_version = str(meta.get("resourceVersion") or scope.resource_version)
        scope.last_seen = time.monotonic()
        scope.state = "synced"
        if kind == "BOOKMARK" or kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        live = summarize({"apiVersion": scope.resource.api_version, "kind": scope.resource.kind, **obj})
        with self._lock:
            if kind == "DELETED":
                self._drop(live.ref.key)
                scope.keys.discard(live.ref.key)
            else:
                self._put(live.ref.key, live)
                scope.keys.add(live.ref.key)
        self._tell(str(kind), live)

    def _put(self, key: tuple[str, str, str, str], live: LiveObject) -> None:
        """Under ``_lock``."""
        old = self._objects.get(key)
        self._objects[key] = live
        if old is None:
            self._entry_bytes += summary_bytes(live) + _key_bytes(key)
        else:  # the entry keeps its key
            self._entry_bytes += summary_bytes(live) - summary_bytes(old)

    def _drop(self, key: tuple[str, str, str, str]) -> None:
        """Under ``_lock``."""
        old = self._objects.pop(key, None)
        if old is not None:
            self._entry_bytes -= summary_bytes(old) + _key_bytes(key)

    def _tell(self, kind: str, live: LiveObject) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, live)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the watch
                log.exception("cache listener failed on %s %s", kind, live.ref)

    def _watch_call(self, scope: Scope) -> Callable[..., Any]:
        """A list function in the shape ``kubernetes.watch.Watch.stream`` drives."""
        path = scope.resource.path(scope.namespace)

        def call(**kwargs: Any) -> Any:
            query = [("labelSelector", LABEL_TARGET), ("watch", "true")]
            for arg, param in (("resource_version", "resourceVersion"), ("timeout_seconds", "timeoutSeconds"),
                               ("allow_watch_bookmarks", "allowWatchBookmarks")):
                value = kwargs.get(arg)
                if value not in (None, ""):
                    query.append((param, str(value).lower() if isinstance(value, bool) else str(value)))
            client = self.api.api
            request = client.param_serialize("GET", path, query_params=query, auth_settings=["BearerToken"],
                                             header_params={"Accept": "application/json"})
            response = client.call_api(*request, _request_timeout=(5, WATCH_TIMEOUT_SECONDS + 30))
            if not 200 <= response.status <= 299:
                raise ApiException(status=response.status, reason=response.reason)
            return response.response

        return call


def _key_bytes(key: tuple[str, str, str, str]) -> int:
    """The key tuple and its group (made for it); its other strings are the summary's."""
    return sys.getsizeof(key) + sys.getsizeof(key[0])


@dataclass
class CacheView:
    """``LiveView`` over a cluster cache: memory for synced scopes, the API server otherwise."""

    cache: ClusterCache
    wait: float = SYNC_WAIT_SECONDS

    def get(self, ref: ObjRef) -> LiveObject | None:
        if self._in_memory(ref):
            return self.cache.get(ref)
        live = self.cache.api.get(ref)  # the scope is not live (relisting, disconnected, forbidden)
        return None if live is None else summarize(live)

    def peek(self, ref: ObjRef) -> tuple[bool, LiveObject | None]:
        try:
            return (True, self.cache.get(ref)) if self._in_memory(ref) else (False, None)
        except NotFound:
            return False, None  # ``get`` says so

    def _in_memory(self, ref: ObjRef) -> bool:
        """Whether ``ref``'s scope is synced (waiting for a first list); ``NotFound`` for a kind not served."""
        resource = self.cache.api.resource(ref.api_version, ref.kind)
        scope = self.cache.watch(resource, ref.namespace, self.wait)
        if scope.state == "listing":
            scope.synced.wait(self.wait)
        return scope.state == "synced"
