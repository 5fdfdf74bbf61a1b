#!/usr/bin/env bash
# Build CoreDNS (the real node's cluster DNS, devstack/realnode.py) from its Go module, with only the
# plugins a local cluster needs (scripts/gotools/coredns/main.go: bind, kubernetes, cache, errors, health,
# ready, loadbalance; CoreDNS as a library, as its docs describe), into a cache outside the repo keyed
# by the module's go.mod, go.sum and main.go. Prints the cache directory on its last line.
set -euo pipefail
if [ -z "${SHIPLINE_GO:-}" ]; then
  SHIPLINE_GO=$(command -v go || true)
  [ -n "$SHIPLINE_GO" ] || { [ -x /usr/local/go/bin/go ] && SHIPLINE_GO=/usr/local/go/bin/go; } || true
fi

here="$(cd "$(dirname "$0")" && pwd)"
module="$here/gotools/coredns"
version=$(awk '{for (i = 1; i < NF; i++) if ($i == "github.com/coredns/coredns") print $(i + 1)}' "$module/go.mod")
[ -n "$version" ] || { echo "error: no github.com/coredns/coredns requirement in $module/go.mod" >&2; exit 1; }
pins_hash=$(cat "$module/go.mod" "$module/go.sum" "$module/main.go" | sha256sum | cut -c1-12)
cache_root="${SHIPLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipline}"
out="$cache_root/coredns/$version-$pins_hash"

if [ -x "$out/coredns" ]; then
  echo "$out"
  exit 0
fi

[ -n "$SHIPLINE_GO" ] && [ -x "$SHIPLINE_GO" ] || { echo "error: Go is required to build CoreDNS (apt-get install golang or see go.dev)" >&2; exit 1; }

PATH="$(dirname "$SHIPLINE_GO"):$PATH"
export GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" GOTOOLCHAIN=local
start=$(date +%s)
mkdir -p "$out.partial"
echo ">> building coredns $version" >&2
(cd "$module" && go build -ldflags "-s -w" -o "$out.partial/coredns" .)
rm -rf "$out" && mv "$out.partial" "$out"
echo ">> coredns built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
