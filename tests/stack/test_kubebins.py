"""Finding the control-plane binaries: KUBEBUILDER_ASSETS first (completed from our build), and a
clear install hint when nothing can be found or built."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import kubebins
from devstack.kube import find_binaries
from devstack.process import StackError


def test_partial_kubebuilder_assets_are_completed_from_the_build(
    kube_cluster_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("etcd", "kube-apiserver"):
        (assets / name).symlink_to(kube_cluster_bin / name)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))

    merged = find_binaries()

    assert (merged / "etcd").resolve() == (assets / "etcd").resolve()
    assert (merged / "etcd").readlink() == assets.resolve() / "etcd"
    assert (merged / "kwok").readlink() == kube_cluster_bin / "kwok"
    assert any((merged / "kwok-stages").glob("*.yaml"))


def test_complete_kubebuilder_assets_are_used_as_is(kube_cluster_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(kube_cluster_bin))

    assert find_binaries() == kube_cluster_bin.resolve()


def test_without_go_or_assets_the_error_carries_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("SHIPLINE_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("SHIPLINE_GO", "/nonexistent/go")

    with pytest.raises(StackError, match=r"KUBEBUILDER_ASSETS(.|\n)*Go is required"):
        find_binaries()


@pytest.fixture
def kube_cluster_bin(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    return kubebins.build_binaries()
