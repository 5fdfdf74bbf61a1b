"""Prune and delete by discriminator (kluctl's rules), over live objects as the apiserver lists them."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.sync.kluctl.prune import deletable, orphans, selector
from handlers.sync.objects import ObjRef, ref_of

D = "shop-staging"


def live(kind: str, name: str, namespace: str = "shop", *, api: str = "v1", manager: str = "shipline",
         discriminator: str = D, owned: bool = False, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"kluctl.io/discriminator": discriminator},
                            "managedFields": [{"manager": manager, "operation": "Apply"}],
                            "annotations": annotations or {}}
    if namespace and kind != "Namespace":
        meta["namespace"] = namespace
    if owned:
        meta["ownerReferences"] = [{"kind": "Deployment", "name": "x"}]
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def names(refs: list[ObjRef]) -> list[str]:
    return [str(r) for r in refs]


def test_orphans_are_the_targets_objects_the_render_lost() -> None:
    cluster = [live("ConfigMap", "kept"), live("ConfigMap", "gone"), live("Secret", "gone-too")]
    rendered = [ref_of(live("ConfigMap", "kept"))]
    assert names(orphans(cluster, rendered, discriminator=D)) == ["ConfigMap/shop/gone", "Secret/shop/gone-too"]


def test_an_api_version_change_is_not_an_orphan() -> None:
    cluster = [live("Deployment", "web", api="apps/v1")]
    rendered = [ObjRef("apps/v1beta2", "Deployment", "shop", "web")]
    assert orphans(cluster, rendered, discriminator=D) == []


@pytest.mark.parametrize("obj", [
    live("ConfigMap", "other-target", discriminator="shop-production"),
    live("ConfigMap", "owned", owned=True),
    live("ConfigMap", "someone-elses", manager="kubectl-client-side-apply"),
    live("ConfigMap", "skip", annotations={"kluctl.io/skip-delete": "true"}),
    live("ConfigMap", "helm-keep", annotations={"helm.sh/resource-policy": "keep"}),
], ids=["other discriminator", "owned", "not written by shipline or kluctl", "skip-delete", "helm keep"])
def test_what_kluctl_never_deletes(obj: dict[str, Any]) -> None:
    assert deletable([obj], discriminator=D) == []


def test_objects_kluctl_deployed_before_the_move_to_shipline_are_pruned_too() -> None:
    assert names(deletable([live("ConfigMap", "old", manager="kluctl")], discriminator=D)) == ["ConfigMap/shop/old"]
    forced = live("ConfigMap", "f", manager="x", annotations={"kluctl.io/force-managed": "true"})
    assert names(deletable([forced], discriminator=D)) == ["ConfigMap/shop/f"]


def test_delete_order_and_objects_left_to_their_namespace() -> None:
    cluster = [
        live("ConfigMap", "cm", "other"), live("Service", "svc", "other"),
        live("ServiceMonitor", "sm", "other", api="monitoring.coreos.com/v1"),
        live("Deployment", "in-ns", "doomed", api="apps/v1"), live("Namespace", "doomed", ""),
    ]
    assert names(deletable(cluster, discriminator=D)) == [
        "Namespace/doomed", "ServiceMonitor/other/sm", "Service/other/svc", "ConfigMap/other/cm"]


def test_selector_needs_a_discriminator() -> None:
    assert selector(D) == "kluctl.io/discriminator=shop-staging"
    with pytest.raises(ValueError, match="without a discriminator"):
        selector("")
