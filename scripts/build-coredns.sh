#!/usr/bin/env bash
# Build CoreDNS (the real node's cluster DNS, devstack/realnode.py) from its Go module, with only the
# plugins a local cluster needs (scripts/gotools/coredns/main.go: bind, kubernetes, cache, errors, health,
# ready, loadbalance; CoreDNS as a library, as its docs describe), into a cache outside the repo keyed
# by the module's go.mod, go.sum and main.go. Prints the cache directory on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib/gotool.sh"
module="$here/gotools/coredns"
version=$(pinned_version "$module/go.mod" github.com/coredns/coredns)
out="$cache_root/coredns/$version-$(pins_hash "$module/go.mod" "$module/go.sum" "$module/main.go")"
built_already coredns
go_environment CoreDNS "apt-get install golang or see go.dev"
begin_partial
echo ">> building coredns $version" >&2
(cd "$module" && go build -ldflags "-s -w" -o "$out.partial/coredns" .)
finish_partial coredns
