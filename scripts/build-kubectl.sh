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
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib/gotool.sh"
module="$here/gotools/kubectl"
version=$(pinned_version "$module/go.mod" k8s.io/kubernetes)
out="$cache_root/kubectl/$version-$(pins_hash "$module/go.mod" "$module/go.sum")"
built_already kubectl
go_environment kubectl "apt-get install golang or see go.dev"
begin_partial
echo ">> building kubectl $version" >&2
(cd "$module" && go build -ldflags "$(k8s_ldflags "$version")" -o "$out.partial/kubectl" k8s.io/kubernetes/cmd/kubectl)
finish_partial kubectl
