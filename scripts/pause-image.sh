#!/bin/sh
# Builds the pod sandbox image localhost/skiff/pause:1 (scripts/pause, static)
# as an OCI archive at $1, for GOARCH $2 (default: this machine's), named $3
# when given (the conformance suite's registry.k8s.io/pause).
set -eu
if [ $# -lt 1 ] || [ $# -gt 3 ]; then
	echo "usage: $0 OUT.tar [GOARCH [NAME]]" >&2
	exit 2
fi
out=$(realpath -m "$1")
cd "$(dirname "$0")/.."
arch=${2:-$(go env GOHOSTARCH)}
name=${3:-localhost/skiff/pause:1}
umask 022 # file modes go into the layer
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/rootfs"
# -trimpath and no build ID keep the binary, and so the image, the same from
# one checkout or machine to another.
CGO_ENABLED=0 scripts/cross.sh "$arch" go build -trimpath -buildvcs=false -ldflags "-s -w -buildid=" -o "$tmp/rootfs/pause" ./scripts/pause
go run ./scripts/mkimage -arch "$arch" -name "$name" -rootfs "$tmp/rootfs" -entrypoint /pause -o "$out"
