"""Find the control-plane binaries: ``$KUBEBUILDER_ASSETS`` first, else our cached Go build."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from devstack.process import cached_output

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO_ROOT / "scripts/build-k8s.sh"
BUILD_TIMEOUT = 3600
"""A cold build on 2 cores takes tens of minutes; a warm cache returns at once."""
ENVTEST = ("etcd", "kube-apiserver")
EXTRA = ("kube-controller-manager", "kube-scheduler", "kwok")
STAGES = "kwok-stages"
HINT = (
    "run scripts/build-k8s.sh (needs Go >= 1.26; builds into ~/.cache/shipline/k8s), or set "
    "KUBEBUILDER_ASSETS to a directory holding etcd, kube-apiserver, kube-controller-manager, "
    "kube-scheduler, kwok and kwok-stages/*.yaml"
)


def find_binaries() -> Path:
    """A directory with every binary and ``kwok-stages/``.

    ``$KUBEBUILDER_ASSETS`` wins when it has the envtest pair (etcd, kube-apiserver); what it
    lacks (controller-manager, scheduler, kwok + stages) comes from ``scripts/build-k8s.sh``,
    joined through a directory of symlinks in the cache.
    """
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and _has(Path(assets), ENVTEST):
        assets_dir = Path(assets).resolve()
        if _has(assets_dir, EXTRA) and _has_stages(assets_dir):
            return assets_dir
        return _merge(assets_dir, build_binaries())
    return build_binaries()


def build_binaries() -> Path:
    """Run ``scripts/build-k8s.sh`` (a no-op when its cache is complete) and return its bin dir."""
    return cached_output(BUILD_SCRIPT, HINT, expect=ENVTEST + EXTRA + (STAGES,), timeout=BUILD_TIMEOUT)


def _has(directory: Path, names: tuple[str, ...]) -> bool:
    return all(os.access(directory / n, os.X_OK) for n in names)


def _has_stages(directory: Path) -> bool:
    return any((directory / STAGES).glob("*.yaml"))


def _merge(primary: Path, fallback: Path) -> Path:
    """Symlink farm (in the temp dir, rebuilt on each call): each binary from ``primary`` when
    present there, else from ``fallback``."""
    key = hashlib.sha256(f"{primary}\0{fallback}".encode()).hexdigest()[:12]
    merged = Path(tempfile.gettempdir()) / f"shipline-k8s-assets-{key}"
    merged.mkdir(parents=True, exist_ok=True)
    kwok_home = primary if _has(primary, ("kwok",)) and _has_stages(primary) else fallback
    sources = {n: primary if _has(primary, (n,)) else fallback for n in ENVTEST + EXTRA}
    sources["kwok"] = sources[STAGES] = kwok_home
    for name, source in sources.items():
        link = merged / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source / name)
    return merged
