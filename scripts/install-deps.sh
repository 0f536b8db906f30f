#!/bin/sh
# Usage: scripts/install-deps.sh build|test|release
#
# Installs the Debian packages skiff needs, as root, and only those missing:
#   build    building skiff (gcc, libseccomp for runc, pkg-config) and running
#            its node (iptables, nftables, ipset for NetworkPolicies)
#   release  build, plus the cross compilers and the libseccomp that
#            `make release` links into the other architectures' runc, for
#            each of $RELEASE_ARCHES (Go's names; default "amd64 arm64")
#   test     release, plus what `make test` uses: PostgreSQL, busybox-static
#            for the test image, iproute2, shellcheck, systemd-analyze,
#            qemu-user-static for the arm64 artifact, and curl and bzip2 for
#            the conformance images' BusyBox source
# Go itself comes from go.dev (/usr/local/go), not Debian. Services that
# packages would start (PostgreSQL) are not started: tests start their own.
set -eu
mode=${1:-}
case $mode in
build | release | test) ;;
*)
	echo "usage: $0 build|test|release" >&2
	exit 2
	;;
esac
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: run as root to install packages (or install them yourself: see $0)" >&2
	exit 1
fi

need=
want() { need="$need $1"; }
has() { dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

for pkg in gcc make git pkg-config libseccomp-dev iptables nftables ipset zstd; do
	has "$pkg" || want "$pkg"
done
arches=
if [ "$mode" != build ]; then
	host=$(dpkg --print-architecture)
	for goarch in ${RELEASE_ARCHES:-amd64 arm64}; do
		arch=$goarch
		[ "$goarch" = arm ] && arch=armhf
		[ "$arch" = "$host" ] && continue
		arches="$arches $arch"
		case $arch in
		amd64) triplet=x86-64-linux-gnu cross=amd64 ;;
		arm64) triplet=aarch64-linux-gnu cross=arm64 ;;
		armhf) triplet=arm-linux-gnueabihf cross=armhf ;;
		*)
			echo "install-deps: no cross build for $goarch" >&2
			exit 2
			;;
		esac
		for pkg in "gcc-$triplet" "libc6-dev-$cross-cross" "libseccomp-dev:$arch"; do
			has "$pkg" || want "$pkg"
		done
	done
fi
if [ "$mode" = test ]; then
	for pkg in postgresql busybox-static iproute2 util-linux shellcheck systemd qemu-user-static procps curl bzip2; do
		has "$pkg" || want "$pkg"
	done
fi
[ -z "$need" ] && exit 0

# libseccomp-dev:arm64 and the like come from the other architectures'
# package lists.
for arch in $arches; do
	dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
done
made_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	made_policy=1
fi
trap '[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT
echo "install-deps: installing$need"
apt-get update -q
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
