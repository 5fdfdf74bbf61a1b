#!/usr/bin/env bash
# Build the root filesystem of a minimal Debian bookworm holding Shipline's runtime packages, as a
# tarball, with mmdebstrap from Debian's own archive: Docker Hub cannot be reached here, so the
# image is built FROM this (imported into the local registry by devstack/debianbase.py) instead of
# debian:bookworm-slim. Shaped like -slim: minbase, no recommends, no docs/man pages/locales.
#
# The package list is read from the Dockerfile's `ARG RUNTIME_PACKAGES=` line (one list for both),
# so the Dockerfile's install step finds everything present and skips apt. The cache directory is
# keyed by every input (this script, that list, the mirrors, mmdebstrap's version): built once per
# machine. Prints the tarball's path on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dockerfile="$here/../Dockerfile"
suite=bookworm
mirror="${SHIPLINE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${SHIPLINE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

# mmdebstrap is a Debian package: installed here when missing, as bootstrap installs the others.
if ! command -v mmdebstrap >/dev/null; then
  echo ">> apt-get install mmdebstrap" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends mmdebstrap; } >&2 \
    || { echo "error: could not install mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }
fi
packages=$(sed -n 's/^ARG RUNTIME_PACKAGES="\(.*\)"$/\1/p' "$dockerfile")
[ -n "$packages" ] || { echo "error: no ARG RUNTIME_PACKAGES=\"...\" line in $dockerfile" >&2; exit 1; }

key=$( { cat "$0"; echo "$suite $packages $mirror $security"; mmdebstrap --version; } | sha256sum | cut -c1-12)
cache_root="${SHIPLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/shipline}"
out="$cache_root/debian-base/$suite-$key"
mkdir -p "$cache_root/debian-base"

# Two test sessions may ask at once: one builds, the other waits for it.
exec 9>"$cache_root/debian-base/.lock"
flock 9
if [ -s "$out/rootfs.tar" ]; then
  echo "$out/rootfs.tar"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "error: mmdebstrap's root mode needs root (run as root or via sudo)" >&2; exit 1; }
start=$(date +%s)
rm -rf "$out.partial" && mkdir -p "$out.partial"
echo ">> mmdebstrap $suite: $packages" >&2
mmdebstrap --quiet --mode=root --variant=minbase --include="${packages// /,}" \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  "$suite" "$out.partial/rootfs.tar" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" >&2
echo "$suite $packages" >"$out.partial/inputs"
rm -rf "$out" && mv "$out.partial" "$out"
echo ">> Debian base built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out/rootfs.tar"
