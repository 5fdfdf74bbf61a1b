"""The real node's kubelet is built from the control plane's own pins (scripts/build-k8s-node.sh)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "scripts" / "gotools"


def modules(go_mod: Path) -> dict[str, str]:
    """module -> version, from require lines and replace targets (a replace wins)."""
    text = go_mod.read_text()
    found = dict(re.findall(r"^\s+(\S+) (v\S+)(?: // indirect)?$", text, re.MULTILINE))
    found.update({m: v for m, v in re.findall(r"^replace (\S+) => \S+ (v\S+)$", text, re.MULTILINE)})
    return found


def test_kubelet_module_pins_every_shared_module_like_the_control_plane() -> None:
    control_plane, node = modules(TOOLS / "k8s" / "go.mod"), modules(TOOLS / "kubelet" / "go.mod")
    assert node["k8s.io/kubernetes"] == control_plane["k8s.io/kubernetes"] == "v1.36.3"
    shared = set(control_plane) & set(node)
    assert len(shared) > 100
    assert {m: node[m] for m in shared if node[m] != control_plane[m]} == {}


def test_kubelet_module_replaces_every_staging_module() -> None:
    replaced = set(re.findall(r"^replace (k8s\.io/\S+) =>", (TOOLS / "kubelet" / "go.mod").read_text(), re.M))
    assert replaced == set(re.findall(r"^replace (k8s\.io/\S+) =>", (TOOLS / "k8s" / "go.mod").read_text(), re.M))
    assert {"k8s.io/kubelet", "k8s.io/cri-api", "k8s.io/cri-streaming"} <= replaced


def test_node_build_has_its_own_cache_entry_keyed_by_its_own_pins() -> None:
    script = (ROOT / "scripts" / "build-k8s-node.sh").read_text()
    assert 'out="$cache_root/k8s-node/$K8S_VERSION-$(pins_hash "$module/go.mod" "$module/go.sum")"' in script
    control_plane = (ROOT / "scripts" / "build-k8s.sh").read_text()
    [expected] = [line for line in control_plane.splitlines() if line.startswith("built_already ")]
    assert "kubelet" not in expected and "gotools/kubelet" not in control_plane
