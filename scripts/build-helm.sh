#!/usr/bin/env bash
# Build helm (the `helm template` of the kluctl render mode's Helm charts) from its Go module into
# a cache outside the repo, reused by later runs.
#
# The pin lives in scripts/gotools/helm/go.mod (with go.sum); the cache directory is keyed by the
# version and a hash of those two files. Prints the cache directory (holding helm) on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib/gotool.sh"
module="$here/gotools/helm"
version=$(pinned_version "$module/go.mod" helm.sh/helm/v3)
out="$cache_root/helm/$version-$(pins_hash "$module/go.mod" "$module/go.sum")"
built_already helm
go_environment helm "apt-get install golang or see go.dev; or put a helm binary on PATH"
begin_partial
echo ">> building helm $version" >&2
(cd "$module" && go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
  -o "$out.partial/helm" helm.sh/helm/v3/cmd/helm)
finish_partial helm
