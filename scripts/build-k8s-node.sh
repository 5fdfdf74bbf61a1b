#!/usr/bin/env bash
# Build the real node's Kubernetes binaries (kubelet, kube-proxy) from the same pinned Kubernetes
# modules as the control plane: scripts/gotools/kubelet/go.mod has the same k8s.io/kubernetes
# version and staging replaces as scripts/gotools/k8s (tests/stack/test_node_pins.py holds every
# shared module at the same version); it only adds what kubelet and kube-proxy import beyond the
# control plane. Its own go.mod and cache entry (keyed by those two files), so adding the node never
# invalidates the control plane's binaries; run after scripts/build-k8s.sh, the shared packages come
# from Go's build cache. Prints the cache directory on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib/gotool.sh"
K8S_VERSION=v1.36.3
module="$here/gotools/kubelet"
out="$cache_root/k8s-node/$K8S_VERSION-$(pins_hash "$module/go.mod" "$module/go.sum")"
built_already kubelet kube-proxy
go_environment kubelet "apt-get install golang or see go.dev"
begin_partial

echo ">> building kubelet, kube-proxy ($K8S_VERSION)" >&2
(cd "$module" && go build -ldflags "$(k8s_ldflags "$K8S_VERSION")" -o "$out.partial/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)

finish_partial "node binaries"
