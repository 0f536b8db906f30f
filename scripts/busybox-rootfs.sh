#!/bin/sh
# Usage: scripts/busybox-rootfs.sh DIR [BUSYBOX]
#
# Fills DIR with a minimal root file system: BUSYBOX (default: Debian's
# busybox-static) with a link for every applet DIR does not already have as
# a program, /etc/passwd and /etc/group, /tmp. The busybox test image and
# the conformance images are built on it (scripts/busybox-image.sh,
# scripts/conformance-images.sh).
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 DIR [BUSYBOX]" >&2
	exit 2
fi
root=$1
busybox=${2:-/bin/busybox}
if [ ! -x "$busybox" ]; then
	echo "busybox-rootfs: needs $busybox: apt-get install busybox-static" >&2
	exit 1
fi
# File modes go into the layer: fix them so any user's umask builds the
# same bytes.
umask 022
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/var/www" "$root/root"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
	[ "$applet" = busybox ] || [ -e "$root/bin/$applet" ] || [ -e "$root/usr/bin/$applet" ] ||
		[ -e "$root/sbin/$applet" ] || [ -e "$root/usr/sbin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
[ -e "$root/etc/passwd" ] || printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
[ -e "$root/etc/group" ] || printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
