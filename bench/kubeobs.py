"""Watching the cluster from the outside: the API server's own request counters, and object reads.

The benchmarks never ask the engine under test what it did: requests are counted by the API
server (``apiserver_request_total``), objects are read back with the bench's own client.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

KINDS_COUNTED = frozenset({"configmaps", "deployments", "services", "namespaces"})
_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def client(kubeconfig: Path) -> Any:
    """The bench's own ``ApiClient`` (never the one handed to the engine under test)."""
    from kubernetes import config

    return config.new_client_from_config(str(kubeconfig))


def api_requests(api: Any, resources: frozenset[str] = KINDS_COUNTED) -> Counter[str]:
    """Requests the API server has answered so far on ``resources`` (no subresources), by verb;
    dry-run requests counted apart (``APPLY dry-run``). Subtract two readings for a window."""
    serialized = api.param_serialize("GET", "/metrics", header_params={"Accept": "text/plain"},
                                     auth_settings=["BearerToken"])
    text = api.call_api(*serialized, _request_timeout=30).read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("resource") not in resources or labels.get("subresource"):
            continue
        verb = labels.get("verb", "?") + (" dry-run" if labels.get("dry_run") else "")
        counts[verb] += int(float(match["value"]))
    return counts


def delta(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    return {verb: n for verb in sorted(after) if (n := after[verb] - before.get(verb, 0)) > 0}


def summary(requests: dict[str, int | float]) -> str:
    """``"412 (GET 200, APPLY dry-run 200, LIST 12)"``: total first, biggest verbs first."""
    total = sum(requests.values())
    parts = ", ".join(f"{verb} {n:g}" for verb, n in sorted(requests.items(), key=lambda kv: -kv[1]) if n)
    return f"{total:g}" + (f" ({parts})" if parts else "")


def list_objects(api: Any, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    """ConfigMaps, Deployments and Services of ``namespace`` as plain dicts keyed by (kind, name)."""
    from kubernetes import client as k8s

    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    listers = (("ConfigMap", core.list_namespaced_config_map), ("Deployment", apps.list_namespaced_deployment),
               ("Service", core.list_namespaced_service))
    for kind, lister in listers:
        for item in lister(namespace, _request_timeout=60).items:
            found[(kind, item.metadata.name)] = api.sanitize_for_serialization(item)
    return found


def deployment_image(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])
