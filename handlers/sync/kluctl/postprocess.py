"""What kluctl does to every object of a deployment item after kustomize
(``DeploymentItem.postprocessObjects``, ``DeploymentCollection.fixNamespaces``):

- objects annotated ``kluctl.io/ignore: "true"`` are dropped;
- labels: the ``commonLabels`` of the project chain, ``kluctl.io/discriminator`` (when the target
  has one) and ``kluctl.io/tag-<n>`` for the item's tags;
- annotations: the ``commonAnnotations``, ``kluctl.io/deployment-item-dir`` (the item's directory,
  repo-relative) and ``kluctl.io/skip-delete-if-tags`` when the item sets it;
- objects of a Helm chart with a ``namespace`` and none of their own go to that namespace unless
  their kind is cluster-scoped (built-in, or a CRD of the render with ``scope: Cluster``; for kinds
  the render does not know, the engine drops the namespace again if the cluster says so).

kluctl and Helm hooks are refused: kluctl runs them around the apply, which Shipline does not do.
"""

from __future__ import annotations

from collections.abc import Iterable

from handlers.sync.kluctl.helm import INSTALL_NAMESPACE
from handlers.sync.kluctl.tree import Item
from handlers.sync.manifestio import RenderError
from handlers.sync.objects import Obj

DISCRIMINATOR_LABEL = "kluctl.io/discriminator"
TAG_LABEL = "kluctl.io/tag-{}"
ITEM_DIR_ANNOTATION = "kluctl.io/deployment-item-dir"
CLUSTER_SCOPED = frozenset({
    ("", "Namespace"), ("", "Node"), ("", "PersistentVolume"), ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"), ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"), ("apiregistration.k8s.io", "APIService"),
    ("storage.k8s.io", "StorageClass"), ("storage.k8s.io", "CSIDriver"), ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"), ("storage.k8s.io", "VolumeAttributesClass"),
    ("scheduling.k8s.io", "PriorityClass"), ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"), ("networking.k8s.io", "IPAddress"), ("networking.k8s.io", "ServiceCIDR"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
    ("certificates.k8s.io", "CertificateSigningRequest"), ("certificates.k8s.io", "ClusterTrustBundle"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"), ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("resource.k8s.io", "DeviceClass"), ("resource.k8s.io", "ResourceSlice"),
    ("internal.apiserver.k8s.io", "StorageVersion"),
})


def postprocess(item: Item, objects: list[Obj], *, discriminator: str, item_dir: str) -> list[Obj]:
    labels = item.project.common("commonLabels")
    if discriminator:
        labels[DISCRIMINATOR_LABEL] = discriminator
    labels.update({TAG_LABEL.format(i): tag for i, tag in enumerate(item.tags)})
    annotations = {**item.project.common("commonAnnotations"), ITEM_DIR_ANNOTATION: item_dir}
    if item.config.get("skipDeleteIfTags"):
        annotations["kluctl.io/skip-delete-if-tags"] = "true"
    kept = [o for o in objects if not _flag(o, "kluctl.io/ignore")]
    for obj in kept:
        _refuse_hooks(obj, item)
        meta = obj["metadata"]
        meta["labels"] = {**(meta.get("labels") or {}), **labels}
        meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return kept


def fix_helm_namespaces(objects: Iterable[Obj]) -> None:
    """Objects of a chart with a namespace: into it unless cluster-scoped (see the module doc)."""
    objects = list(objects)
    scopes = {(o["spec"]["group"], o["spec"]["names"]["kind"]): o["spec"].get("scope") == "Cluster"
              for o in objects if o.get("kind") == "CustomResourceDefinition" and _crd_shape(o)}
    for obj in objects:
        notes = obj["metadata"].get("annotations") or {}
        namespace = notes.pop(INSTALL_NAMESPACE, None)
        if namespace is None:
            continue
        if not notes:
            obj["metadata"].pop("annotations", None)
        group = str(obj["apiVersion"]).rpartition("/")[0]
        cluster_scoped = (group, obj["kind"]) in CLUSTER_SCOPED or scopes.get((group, obj["kind"]), False)
        if not cluster_scoped and not obj["metadata"].get("namespace"):
            obj["metadata"]["namespace"] = namespace


def _refuse_hooks(obj: Obj, item: Item) -> None:
    notes = obj["metadata"].get("annotations") or {}
    hook = notes.get("kluctl.io/hook") or notes.get("helm.sh/hook")
    if hook:
        name = f"{obj['kind']}/{obj['metadata'].get('name')}"
        raise RenderError(f"{item.origin}: {name} is a hook ({hook}); hooks are not supported by Shipline's "
                          "kluctl mode (remove the hook annotation to apply it as an ordinary object)")


def _flag(obj: Obj, key: str) -> bool:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(key, "")).lower() == "true"


def _crd_shape(obj: Obj) -> bool:
    spec = obj.get("spec") or {}
    return isinstance(spec.get("group"), str) and isinstance((spec.get("names") or {}).get("kind"), str)
