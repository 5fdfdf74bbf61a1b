# Sourced by scripts/build-*.sh: a tool built from its pinned Go module into a cache outside the
# repo, reused by later runs. The caller sets `out` (the cache directory, keyed by the version and
# a hash of its pins: `pins_hash FILE...`; the version from `pinned_version GO_MOD MODULE`), then:
#   built_already BINARY...   prints `out` and exits 0 when every BINARY is there
#   go_environment WHAT HINT  Go on PATH and its build settings, or the install hint and exit 1
#   begin_partial             an empty `out.partial` to build into, and the clock started
#   finish_partial WHAT       `out.partial` moved into place; prints `out` on the last line
#   k8s_ldflags VERSION       the version stamp Kubernetes' own build embeds
# Go may be installed outside PATH (the official tarball's location); SHIPLINE_GO names it exactly.
if [ -z "${SHIPLINE_GO:-}" ]; then
  SHIPLINE_GO=$(command -v go || true)
  [ -n "$SHIPLINE_GO" ] || { [ -x /usr/local/go/bin/go ] && SHIPLINE_GO=/usr/local/go/bin/go; } || true
fi
cache_root="${SHIPLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipline}"

pins_hash() {
  cat "$@" | sha256sum | cut -c1-12
}

# The version GO_MOD requires of MODULE (a line of a require block, or a one-line `require`);
# without one, says so and fails (set -e stops the caller at `version=$(pinned_version ...)`).
pinned_version() {
  local found
  found=$(awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2} $1 == "require" && $2 == m {print $3}' "$1")
  [ -n "$found" ] || { echo "error: no $2 requirement in $1" >&2; return 1; }
  echo "$found"
}

built_already() {
  local binary
  for binary in "$@"; do [ -x "$out/$binary" ] || return 0; done
  echo "$out"
  exit 0
}

go_environment() {
  [ -n "$SHIPLINE_GO" ] && [ -x "$SHIPLINE_GO" ] || { echo "error: Go is required to build $1 ($2)" >&2; exit 1; }
  PATH="$(dirname "$SHIPLINE_GO"):$PATH"
  # -buildvcs=false: a main package in this repo (scripts/gotools/*) would carry the repo's commit
  export GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly -buildvcs=false" GOTOOLCHAIN=local
}

begin_partial() {
  rm -rf "$out.partial" && mkdir -p "$out.partial"
  started=$(date +%s)
}

finish_partial() {
  rm -rf "$out" && mv "$out.partial" "$out"
  echo ">> $1 built in $(( $(date +%s) - started ))s into $out" >&2
  echo "$out"
}

k8s_ldflags() {
  local version=$1 minor build_date flags="-s -w" p
  minor=$(echo "$version" | cut -d. -f2)
  build_date=$(date -u -d @"${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags="$flags -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    flags="$flags -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
  done
  echo "$flags"
}
