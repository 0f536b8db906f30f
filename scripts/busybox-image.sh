#!/bin/sh
# Builds the test image docker.io/library/busybox:latest (or the name in $2)
# from Debian's busybox-static, with a link for every applet, as an OCI
# archive at $1. Nothing is pulled: see "No registry" in the design.
set -eu
if [ $# -lt 1 ]; then
	echo "usage: $0 OUT.tar [NAME]" >&2
	exit 2
fi
out=$(realpath -m "$1")
name=${2:-docker.io/library/busybox:latest}
cd "$(dirname "$0")/.."
if [ ! -x /bin/busybox ]; then
	echo "busybox-image: needs Debian's busybox-static: apt-get install busybox-static" >&2
	exit 1
fi
# File modes go into the layer: fix them so any user's umask builds the
# same bytes.
umask 022
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/var/www" "$root/root"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
	[ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
# The PATH of the Docker Hub busybox image, which this one stands in for.
go run ./scripts/mkimage -name "$name" -rootfs "$root" \
	-env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin -cmd sh -o "$out"
