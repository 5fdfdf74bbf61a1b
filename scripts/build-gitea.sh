#!/usr/bin/env bash
# Build Gitea from its official Go module into a cache outside the repo, reused by later runs.
#
# Gitea's go.mod has `replace` directives, which a plain `go install module@version` refuses, so
# scripts/gotools/gitea/ is a wrapper module that requires code.gitea.io/gitea and repeats them
# (pinned by its go.sum). Built as Gitea's Makefile does for `TAGS="sqlite sqlite_unlock_notify"`:
# cgo for SQLite, its CGO_CFLAGS, version stamped into main.Version. No `bindata` tag: the
# templates, locales and public files are copied from the module beside the binary and Gitea reads
# them from there (STATIC_ROOT_PATH); the built web assets (CSS/JS) are not in the module at all.
# The cache directory is keyed by the version and a hash of the wrapper's go.mod and go.sum.
# Prints the cache directory (holding `gitea` and its assets) on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib/gotool.sh"
GITEA_VERSION=v1.26.0
tool="$here/gotools/gitea"
out="$cache_root/gitea/$GITEA_VERSION-$(pins_hash "$tool/go.mod" "$tool/go.sum")"
[ -d "$out/options/locale" ] && [ -d "$out/templates" ] && built_already gitea
go_environment Gitea "Go >= 1.26.2: see go.dev/dl"
command -v gcc >/dev/null || { echo "error: gcc is required to build Gitea with SQLite (cgo): apt-get install gcc libc6-dev" >&2; exit 1; }

tags="sqlite sqlite_unlock_notify"
export CGO_ENABLED=1 GOFLAGS="-trimpath -mod=readonly -buildvcs=false"
export CGO_CFLAGS="$(go env CGO_CFLAGS) -DSQLITE_MAX_VARIABLE_NUMBER=32766"
begin_partial

echo ">> building gitea $GITEA_VERSION (cgo, tags: $tags)" >&2
(cd "$tool" && go build -tags "$tags" \
  -ldflags "-s -w -X 'main.Version=${GITEA_VERSION#v}' -X 'main.Tags=$tags'" \
  -o "$out.partial/gitea" code.gitea.io/gitea)

src=$(cd "$tool" && go list -m -f '{{.Dir}}' code.gitea.io/gitea)
for d in options templates public; do
  cp -r "$src/$d" "$out.partial/$d"
done
chmod -R u+w "$out.partial"

finish_partial gitea
