#!/bin/sh
# Builds the test image docker.io/library/busybox:latest (or the name in $2)
# from Debian's busybox-static, with a link for every applet
# (scripts/busybox-rootfs.sh), as an OCI archive at $1. Nothing is pulled:
# see "No registry" in the design.
set -eu
if [ $# -lt 1 ]; then
	echo "usage: $0 OUT.tar [NAME]" >&2
	exit 2
fi
out=$(realpath -m "$1")
name=${2:-docker.io/library/busybox:latest}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs
scripts/busybox-rootfs.sh "$root"
# The PATH of the Docker Hub busybox image, which this one stands in for.
go run ./scripts/mkimage -name "$name" -rootfs "$root" \
	-env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -cmd sh -o "$out"
