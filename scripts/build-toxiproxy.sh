#!/usr/bin/env bash
# Build Shopify's toxiproxy (the fault-injecting TCP proxy of the chaos scenarios) from its Go
# module into a cache outside the repo, reused by later runs.
#
# The pin lives in scripts/gotools/toxiproxy/go.mod (with go.sum); the cache directory is keyed by
# a hash of those two files. Prints the cache directory (holding toxiproxy-server) on its last line.
set -euo pipefail
if [ -z "${SHIPLINE_GO:-}" ]; then
  SHIPLINE_GO=$(command -v go || true)
  [ -n "$SHIPLINE_GO" ] || { [ -x /usr/local/go/bin/go ] && SHIPLINE_GO=/usr/local/go/bin/go; } || true
fi

here="$(cd "$(dirname "$0")" && pwd)"
module="$here/gotools/toxiproxy"
version=$(awk '$1 == "github.com/Shopify/toxiproxy/v2" {print $2}' "$module/go.mod")
pins_hash=$(cat "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
cache_root="${SHIPLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipline}"
out="$cache_root/toxiproxy/$version-$pins_hash"

if [ -x "$out/toxiproxy-server" ]; then
  echo "$out"
  exit 0
fi

[ -n "$SHIPLINE_GO" ] && [ -x "$SHIPLINE_GO" ] || { echo "error: Go is required to build toxiproxy (apt-get install golang or see go.dev)" >&2; exit 1; }

PATH="$(dirname "$SHIPLINE_GO"):$PATH"
export GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" GOTOOLCHAIN=local
start=$(date +%s)
mkdir -p "$out.partial"
echo ">> building toxiproxy $version" >&2
(cd "$module" && go build -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$version" \
  -o "$out.partial/toxiproxy-server" github.com/Shopify/toxiproxy/v2/cmd/server)
rm -rf "$out" && mv "$out.partial" "$out"
echo ">> toxiproxy built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
