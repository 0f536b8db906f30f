#!/bin/sh
# Builds the pod sandbox image localhost/skiff/pause:1 (scripts/pause, static)
# as an OCI archive at $1.
set -eu
out=$(realpath -m "$1")
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/rootfs"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/rootfs/pause" ./scripts/pause
go run ./scripts/mkimage -name localhost/skiff/pause:1 -rootfs "$tmp/rootfs" -entrypoint /pause -o "$out"
