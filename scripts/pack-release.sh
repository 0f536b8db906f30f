#!/bin/sh
# Usage: scripts/pack-release.sh GOARCH PROGRAM OUT
#
# Packs the skiff PROGRAM built for GOARCH into the release binary OUT: the
# launcher (cmd/skiff-selfextract, ~2 MiB) followed by PROGRAM compressed
# with zstd -19, as k3s's release binary is (see pkg/selfextract). The
# compression takes ~80 s per architecture on two cores.
set -eu
cd "$(dirname "$0")/.."
if [ $# -ne 3 ]; then
	echo "usage: $0 GOARCH PROGRAM OUT" >&2
	exit 2
fi
arch=$1 program=$2 out=$3
# A release binary ends with a trailer whose first 32 bytes are the sha256 of
# its program: one that holds this program already is kept.
if [ -f "$out" ] && [ "$(tail -c 64 "$out" | head -c 32 | od -An -tx1 -v | tr -d ' \n')" = "$(sha256sum <"$program" | cut -d' ' -f1)" ]; then
	echo "pack-release: $out holds $program already"
	exit 0
fi
command -v zstd >/dev/null || { echo "pack-release: needs zstd: apt-get install zstd" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "-s -w" -o "$tmp/launcher" ./cmd/skiff-selfextract
# --long: a window of 128 MiB finds repeats across the whole program
# (the launcher's decoder accepts windows up to 512 MiB).
zstd -q -19 --long=27 -T0 -c "$program" > "$tmp/program.zst"
go run ./scripts/mkrelease -launcher "$tmp/launcher" -program "$tmp/program.zst" -o "$out"
ls -l "$out"
