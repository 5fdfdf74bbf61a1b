#!/usr/bin/env bash
# Build kubectl (with its built-in kustomize) from the official Go module into a cache outside the
# repo, reused by later runs. Shipline's image carries it for the `kustomize` and `kluctl` render
# modes; the Dockerfile takes it from registry.k8s.io/kubectl for users, from this build here (no
# pulls).
#
# The pins live in scripts/gotools/kubectl/go.mod (with go.sum; same Kubernetes version and
# replaces as scripts/gotools/k8s); the cache directory is keyed by the version and a hash of those
# two files. Prints the cache directory (holding kubectl) on its last line.
set -euo pipefail
if [ -z "${SHIPLINE_GO:-}" ]; then
  SHIPLINE_GO=$(command -v go || true)
  [ -n "$SHIPLINE_GO" ] || { [ -x /usr/local/go/bin/go ] && SHIPLINE_GO=/usr/local/go/bin/go; } || true
fi

here="$(cd "$(dirname "$0")" && pwd)"
module="$here/gotools/kubectl"
version=$(awk '$1 == "k8s.io/kubernetes" {print $2} $1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$module/go.mod")
[ -n "$version" ] || { echo "error: no k8s.io/kubernetes requirement in $module/go.mod" >&2; exit 1; }
minor=$(echo "$version" | cut -d. -f2)
pins_hash=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
cache_root="${SHIPLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipline}"
out="$cache_root/kubectl/$version-$pins_hash"

if [ -x "$out/kubectl" ]; then
  echo "$out"
  exit 0
fi

[ -n "$SHIPLINE_GO" ] && [ -x "$SHIPLINE_GO" ] || { echo "error: Go is required to build kubectl (apt-get install golang or see go.dev)" >&2; exit 1; }

PATH="$(dirname "$SHIPLINE_GO"):$PATH"
export GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" GOTOOLCHAIN=local
start=$(date +%s)
build_date=$(date -u -d @"${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ldflags="$ldflags -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
done
mkdir -p "$out.partial"
echo ">> building kubectl $version" >&2
(cd "$module" && go build -ldflags "$ldflags" -o "$out.partial/kubectl" k8s.io/kubernetes/cmd/kubectl)
rm -rf "$out" && mv "$out.partial" "$out"
echo ">> kubectl built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
