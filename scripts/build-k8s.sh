#!/usr/bin/env bash
# Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from their
# official Go modules into a cache outside the repo, reused by later runs.
#
# The pinned versions live in scripts/gotools/*/go.mod (with go.sum); the cache directory is
# keyed by the Kubernetes version and a hash of those files, so a change of pins rebuilds.
# Prints the cache directory (the KUBEBUILDER_ASSETS-style bin dir) on its last line.
set -euo pipefail
# Go may be installed outside PATH (the official tarball's location); SHIPLINE_GO names it exactly.
if [ -z "${SHIPLINE_GO:-}" ]; then
  SHIPLINE_GO=$(command -v go || true)
  [ -n "$SHIPLINE_GO" ] || { [ -x /usr/local/go/bin/go ] && SHIPLINE_GO=/usr/local/go/bin/go; } || true
fi

K8S_VERSION=v1.36.3
here="$(cd "$(dirname "$0")" && pwd)"
tools="$here/gotools"
# Only this script's own modules: another tool's pins (gotools/toxiproxy, ...) must not rebuild Kubernetes.
pins_hash=$(cd "$tools" && cat etcd/go.mod k8s/go.mod kwok/go.mod etcd/go.sum k8s/go.sum kwok/go.sum | sha256sum | cut -c1-12)
cache_root="${SHIPLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipline}"
out="$cache_root/k8s/$K8S_VERSION-$pins_hash"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

complete() {
  for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done
}

if complete; then
  echo "$out"
  exit 0
fi

[ -n "$SHIPLINE_GO" ] && [ -x "$SHIPLINE_GO" ] || { echo "error: Go is required to build the Kubernetes binaries (apt-get install golang or see go.dev)" >&2; exit 1; }

PATH="$(dirname "$SHIPLINE_GO"):$PATH"
export GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" GOTOOLCHAIN=local
mkdir -p "$out.partial"
start=$(date +%s)

build_date=$(date -u -d @"${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=36"
  ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
done

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

rm -rf "$out" && mv "$out.partial" "$out"
echo ">> Kubernetes binaries built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
