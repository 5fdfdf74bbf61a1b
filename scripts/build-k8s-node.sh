#!/usr/bin/env bash
# Build the real node's Kubernetes binaries (kubelet, kube-proxy) from the same pinned Kubernetes
# modules as the control plane: scripts/gotools/kubelet/go.mod has the same k8s.io/kubernetes
# version and staging replaces as scripts/gotools/k8s (tests/stack/test_node_pins.py holds every
# shared module at the same version); it only adds what kubelet and kube-proxy import beyond the
# control plane. Its own go.mod and cache entry (keyed by those two files), so adding the node never
# invalidates the control plane's binaries; run after scripts/build-k8s.sh, the shared packages come
# from Go's build cache. Prints the cache directory on its last line.
set -euo pipefail
if [ -z "${SHIPLINE_GO:-}" ]; then
  SHIPLINE_GO=$(command -v go || true)
  [ -n "$SHIPLINE_GO" ] || { [ -x /usr/local/go/bin/go ] && SHIPLINE_GO=/usr/local/go/bin/go; } || true
fi

K8S_VERSION=v1.36.3
here="$(cd "$(dirname "$0")" && pwd)"
module="$here/gotools/kubelet"
pins_hash=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
cache_root="${SHIPLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipline}"
out="$cache_root/k8s-node/$K8S_VERSION-$pins_hash"
binaries=(kubelet kube-proxy)

complete() {
  for b in "${binaries[@]}"; do [ -x "$out/$b" ] || return 1; done
}

if complete; then
  echo "$out"
  exit 0
fi

[ -n "$SHIPLINE_GO" ] && [ -x "$SHIPLINE_GO" ] || { echo "error: Go is required to build kubelet (apt-get install golang or see go.dev)" >&2; exit 1; }

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

echo ">> building kubelet, kube-proxy ($K8S_VERSION)" >&2
(cd "$module" && go build -ldflags "$ldflags" -o "$out.partial/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)

rm -rf "$out" && mv "$out.partial" "$out"
echo ">> node binaries built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
