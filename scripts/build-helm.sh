#!/usr/bin/env bash
# Build helm (the `helm template` of the kluctl render mode's Helm charts) from its Go module into
# a cache outside the repo, reused by later runs.
#
# The pin lives in scripts/gotools/helm/go.mod (with go.sum); the cache directory is keyed by the
# version and a hash of those two files. Prints the cache directory (holding helm) on its last line.
set -euo pipefail
if [ -z "${SHIPLINE_GO:-}" ]; then
  SHIPLINE_GO=$(command -v go || true)
  [ -n "$SHIPLINE_GO" ] || { [ -x /usr/local/go/bin/go ] && SHIPLINE_GO=/usr/local/go/bin/go; } || true
fi

here="$(cd "$(dirname "$0")" && pwd)"
module="$here/gotools/helm"
version=$(awk '$1 == "helm.sh/helm/v3" {print $2}' "$module/go.mod")
[ -n "$version" ] || { echo "error: no helm.sh/helm/v3 requirement in $module/go.mod" >&2; exit 1; }
pins_hash=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
cache_root="${SHIPLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipline}"
out="$cache_root/helm/$version-$pins_hash"

if [ -x "$out/helm" ]; then
  echo "$out"
  exit 0
fi

[ -n "$SHIPLINE_GO" ] && [ -x "$SHIPLINE_GO" ] || { echo "error: Go is required to build helm (apt-get install golang or see go.dev), or put a helm binary on PATH" >&2; exit 1; }

PATH="$(dirname "$SHIPLINE_GO"):$PATH"
export GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" GOTOOLCHAIN=local
start=$(date +%s)
mkdir -p "$out.partial"
echo ">> building helm $version" >&2
# helm prints its version from internal/version (`helm version`); the module build leaves it "v3.22".
(cd "$module" && go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
  -o "$out.partial/helm" helm.sh/helm/v3/cmd/helm)
rm -rf "$out" && mv "$out.partial" "$out"
echo ">> helm built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
