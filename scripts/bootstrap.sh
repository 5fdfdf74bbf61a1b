#!/usr/bin/env bash
# Install everything Shipline's stack and tests need on a fresh Debian machine, idempotently:
# Debian packages (only those missing), the Python venv from pinned constraints, and the
# Kubernetes binaries, toxiproxy, helm, shipline-push and Gitea (built from their Go modules once, cached
# outside the repo).
set -euo pipefail
# Go may be installed outside PATH (the official tarball's location).
for d in /usr/local/go/bin "$HOME/go/bin"; do
  if [ -x "$d/go" ]; then case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac; fi
done
export PATH
cd "$(dirname "$0")/.."

need=()
for pair in redis-server:redis-server docker-registry:docker-registry buildah:buildah \
            git:git busybox:busybox-static kubectl:kubectl go:golang \
            chromium:chromium gcc:gcc \
            containerd:containerd runc:runc catatonit:catatonit unshare:util-linux ip:iproute2; do
  bin=${pair%%:*}; pkg=${pair#*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
if command -v busybox >/dev/null && ! busybox --list 2>/dev/null | grep -qx sh; then need+=(busybox-static); fi
[ -e /usr/include/stdlib.h ] || need+=(libc6-dev)  # Gitea's SQLite is cgo
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)  # the real node's pod network
if [ -n "${SHIPLINE_EXTRA_PACKAGES:-}" ]; then
  for pkg in $SHIPLINE_EXTRA_PACKAGES; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
fi
command -v go >/dev/null || { echo "error: Go >= 1.26 is needed to build the Kubernetes binaries (or set KUBEBUILDER_ASSETS)" >&2; exit 1; }
command -v kubectl >/dev/null || { echo "error: kubectl (with kustomize) is needed on PATH for kustomize renders" >&2; exit 1; }
if [ ${#need[@]} -gt 0 ]; then
  echo ">> apt-get install ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ] || [ constraints.txt -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo ">> python venv (.venv) from constraints.txt" >&2
  python3 -m venv .venv
  { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -c constraints.txt -e '.[test]'; } \
    >.venv/install.log 2>&1 || { cat .venv/install.log >&2; exit 1; }
  touch .venv/.installed
fi

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  echo ">> using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS" >&2
fi
# Always ensure our own build exists for what KUBEBUILDER_ASSETS may lack (controller-manager, scheduler, kwok).
start=$(date +%s)
scripts/build-k8s.sh >/dev/null
echo ">> Kubernetes binaries ready ($(( $(date +%s) - start ))s)" >&2
start=$(date +%s)
scripts/build-k8s-node.sh >/dev/null  # kubelet + kube-proxy for the real node (devstack/realnode.py)
echo ">> node binaries ready ($(( $(date +%s) - start ))s)" >&2
scripts/build-toxiproxy.sh >/dev/null
echo ">> toxiproxy ready" >&2
scripts/build-helm.sh >/dev/null  # `helm template` for the kluctl render mode's charts
echo ">> helm ready" >&2
scripts/build-push.sh >/dev/null  # shipline-push: the OCI keys set while pushing (handlers/build/pushtool.py)
echo ">> shipline-push ready" >&2
start=$(date +%s)
scripts/build-gitea.sh >/dev/null
echo ">> Gitea ready ($(( $(date +%s) - start ))s)" >&2
