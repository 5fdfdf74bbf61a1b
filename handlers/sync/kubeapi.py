"""The one place Shipline talks to a Kubernetes API: raw JSON requests over the ``kubernetes``
client's ``ApiClient``, its own discovery, and client errors wrapped exactly once.

- connection errors, 429 and 5xx → ``TransientError`` (the cluster may heal);
- 404 → ``NotFound``, 409 → ``Conflict`` (both ``PermanentError``; callers decide);
- any other 4xx → ``PermanentError`` with the API server's message.

Every request has ``REQUEST_TIMEOUT``; nothing is retried here (the sync actor owns retries).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from handlers.errors import ConfigError, PermanentError, TransientError
from handlers.settings import ClusterConfig
from handlers.sync.objects import MANAGER, Obj, ObjRef

REQUEST_TIMEOUT = 30.0
APPLY_TYPE = "application/apply-patch+yaml"


class NotFound(PermanentError):
    """The object (or its namespace, or its kind) does not exist."""


class Forbidden(PermanentError):
    """403: the credentials may not do this (RBAC)."""


class Conflict(PermanentError):
    """409: for an apply, fields another manager owns; ``causes`` lists ``(field, message)``."""

    def __init__(self, message: str, causes: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.causes = causes


def kube_client(cluster: ClusterConfig) -> client.ApiClient:
    """An ``ApiClient`` for the environment's cluster: in-cluster, or kubeconfig (+ context)."""
    try:
        if cluster.in_cluster:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        path = str(cluster.kubeconfig) if cluster.kubeconfig else None
        return config.new_client_from_config(config_file=path, context=cluster.context)
    except (ConfigException, OSError) as exc:
        raise ConfigError(f"cannot load cluster credentials ({cluster!r}): {exc}") from None


@dataclass(frozen=True)
class Resource:
    """Where a kind lives: its plural name and whether it is namespaced."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str = "", name: str = "") -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        return f"{base}/{quote(name, safe='')}" if name else base


@dataclass
class KubeApi:
    api: client.ApiClient
    _kinds: dict[str, dict[str, Resource]] = field(default_factory=dict)

    def close(self) -> None:
        self.api.close()

    # -- discovery -------------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource:
        """Discovery per group/version, cached; refreshed once on a miss (a CRD just installed)."""
        found = self._kinds.get(api_version, {}).get(kind)
        if found is None:
            self._kinds[api_version] = self._discover(api_version)
            found = self._kinds[api_version].get(kind)
        if found is None:
            raise NotFound(f"the cluster serves no kind {kind!r} in {api_version!r} (CRD not installed?)")
        return found

    def forget(self) -> None:
        """Drop the discovery cache (after CRDs changed)."""
        self._kinds.clear()

    def _discover(self, api_version: str) -> dict[str, Resource]:
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            listing = self.request("GET", path)
        except NotFound:
            return {}
        return {
            r["kind"]: Resource(api_version, r["kind"], r["name"], bool(r["namespaced"]))
            for r in listing.get("resources", []) if "/" not in r["name"]
        }

    # -- verbs -----------------------------------------------------------------------------------

    def get(self, ref: ObjRef) -> Obj | None:
        try:
            return self.request("GET", self.resource(ref.api_version, ref.kind).path(ref.namespace, ref.name))
        except NotFound:
            return None

    def list(self, api_version: str, kind: str, *, label_selector: str) -> list[Obj]:
        """Every object of the kind in every namespace that matches ``label_selector``; none when the
        cluster does not serve the kind."""
        try:
            path = self.resource(api_version, kind).path()
            listing = self.request("GET", path, query={"labelSelector": label_selector})
        except NotFound:
            return []
        items = listing.get("items") or []
        for item in items:  # a list leaves these out of its items
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def apply(self, obj: Obj, ref: ObjRef, *, force: bool = False, dry_run: bool = False) -> Obj:
        query = {"fieldManager": MANAGER, "force": "true" if force else None,
                 "dryRun": "All" if dry_run else None}
        path = self.resource(ref.api_version, ref.kind).path(ref.namespace, ref.name)
        return self.request("PATCH", path, body=obj, query=query, content_type=APPLY_TYPE)

    def delete(self, ref: ObjRef, *, dry_run: bool = False) -> None:
        query = {"propagationPolicy": "Background", "dryRun": "All" if dry_run else None}
        path = self.resource(ref.api_version, ref.kind).path(ref.namespace, ref.name)
        with contextlib.suppress(NotFound):  # already gone: the goal is reached
            self.request("DELETE", path, query=query)

    def request(self, method: str, path: str, *, body: Any = None, query: dict[str, str | None] | None = None,
                content_type: str = "application/json") -> Obj:
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self.api.param_serialize(method, path, query_params=params, header_params=headers,
                                              body=body, auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(*serialized, _request_timeout=REQUEST_TIMEOUT)
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"{method} {path}: cannot reach the API server: {exc}") from None
        except ApiException as exc:
            raise _wrap(method, path, exc.status or 0, exc.reason, exc.body) from None
        if not 200 <= response.status <= 299:
            raise _wrap(method, path, response.status, response.reason, data.decode(errors="replace"))
        return json.loads(data) if data else {}


def _wrap(method: str, path: str, status: int, reason: str | None, body: str | bytes | None) -> Exception:
    status_obj = _status_body(body)
    message = f"{method} {path}: {status} {status_obj.get('message') or reason or ''}".rstrip()
    if status == 0 or status == 429 or status >= 500:
        return TransientError(message)
    if status == 404:
        return NotFound(message)
    if status == 403:
        return Forbidden(message)
    if status == 409:
        causes = [(c.get("field", ""), c.get("message", ""))
                  for c in (status_obj.get("details") or {}).get("causes") or []]
        return Conflict(message, causes)
    return PermanentError(message)


def _status_body(body: str | bytes | None) -> dict[str, Any]:
    try:
        parsed = json.loads(body or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
