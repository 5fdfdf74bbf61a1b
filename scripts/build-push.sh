#!/usr/bin/env bash
# Build shipline-push (scripts/gotools/push: `buildah push` with the OCI keys set on the way, so
# the build needs no LABEL step) into a cache outside the repo, reused by later runs.
#
# Its pins (scripts/gotools/push/go.mod with go.sum) are the containers/image and containers/storage
# versions Debian bookworm's buildah 1.28 is built with: both programs read and lock one storage.
# The overlay driver is cgo, so this needs gcc and libc6-dev besides Go. Prints the cache directory
# (holding shipline-push) on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib/gotool.sh"
module="$here/gotools/push"
version=$(pinned_version "$module/go.mod" github.com/containers/image/v5)
out="$cache_root/push/image-$version-$(pins_hash "$module/go.mod" "$module/go.sum" "$module/main.go")"
built_already shipline-push
go_environment shipline-push "apt-get install golang gcc libc6-dev, or see go.dev"
command -v gcc >/dev/null || { echo "error: shipline-push needs gcc (cgo: the overlay storage driver): apt-get install gcc libc6-dev" >&2; exit 1; }
export CGO_ENABLED=1
begin_partial
echo ">> building shipline-push (containers/image $version)" >&2
(cd "$module" && go build -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper containers_image_ostree_stub" \
  -ldflags "-s -w" -o "$out.partial/shipline-push" .)
finish_partial shipline-push
