#!/usr/bin/env bash
# Build Shopify's toxiproxy (the fault-injecting TCP proxy of the chaos scenarios) from its Go
# module into a cache outside the repo, reused by later runs.
#
# The pin lives in scripts/gotools/toxiproxy/go.mod (with go.sum); the cache directory is keyed by
# a hash of those two files. Prints the cache directory (holding toxiproxy-server) on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib/gotool.sh"
module="$here/gotools/toxiproxy"
version=$(pinned_version "$module/go.mod" github.com/Shopify/toxiproxy/v2)
out="$cache_root/toxiproxy/$version-$(pins_hash "$module/go.mod" "$module/go.sum")"
built_already toxiproxy-server
go_environment toxiproxy "apt-get install golang or see go.dev"
begin_partial
echo ">> building toxiproxy $version" >&2
(cd "$module" && go build -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$version" \
  -o "$out.partial/toxiproxy-server" github.com/Shopify/toxiproxy/v2/cmd/server)
finish_partial toxiproxy
