#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from their
# official Go modules into a cache outside the repo, reused by later runs.
#
# The pinned versions live in scripts/gotools/*/go.mod (with go.sum); the cache directory is
# keyed by the Kubernetes version and a hash of those files, so a change of pins rebuilds.
# Prints the cache directory (the KUBEBUILDER_ASSETS-style bin dir) on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib/gotool.sh"
K8S_VERSION=v1.36.3
tools="$here/gotools"
# Only this script's own modules: another tool's pins (gotools/toxiproxy, ...) must not rebuild Kubernetes.
out="$cache_root/k8s/$K8S_VERSION-$(cd "$tools" && pins_hash etcd/go.mod k8s/go.mod kwok/go.mod etcd/go.sum k8s/go.sum kwok/go.sum)"
built_already etcd kube-apiserver kube-controller-manager kube-scheduler kwok
go_environment "the Kubernetes binaries" "apt-get install golang or see go.dev"
begin_partial
ldflags=$(k8s_ldflags "$K8S_VERSION")

echo ">> building etcd" >&2
(cd "$tools/etcd" && go build -ldflags "-s -w" -o "$out.partial/etcd" go.etcd.io/etcd/server/v3)
echo ">> building kwok" >&2
(cd "$tools/kwok" && go build -ldflags "-s -w" -o "$out.partial/kwok" sigs.k8s.io/kwok/cmd/kwok)
echo ">> building kube-apiserver, kube-controller-manager, kube-scheduler ($K8S_VERSION)" >&2
(cd "$tools/k8s" && go build -ldflags "$ldflags" -o "$out.partial/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler)

# kwok's stage definitions (node-initialize, pod-ready, ...) ship inside its module.
kwok_dir=$(cd "$tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
mkdir -p "$out.partial/kwok-stages"
for s in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
         pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
  cp "$kwok_dir/kustomize/stage/$s.yaml" "$out.partial/kwok-stages/$(basename "$s").yaml"
done

finish_partial "Kubernetes binaries"
