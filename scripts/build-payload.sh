#!/bin/sh
# Usage: scripts/build-payload.sh [GOARCH]
#
# Builds the node payload embedded in the skiff binary for GOARCH (default:
# this machine's): containerd, runc, the runc v2 shim and the CNI plugins
# (from the module in scripts/payload), packed as a deterministic
# bin.tar.zst with a SHA256SUMS of its files, plus the system images as OCI
# archives for that architecture. Outputs go to pkg/payload/data/GOARCH and are replaced only
# when their bytes change, so an unchanged payload does not relink skiff.
# Another architecture is a cross build (scripts/cross.sh).
#
# The Go build cache is used as is: nothing here cleans it.
set -eu
cd "$(dirname "$0")/.."
root=$PWD
arch=${1:-$(go env GOHOSTARCH)}
out=$root/pkg/payload/data/$arch
cross="$root/scripts/cross.sh $arch"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$out/images"

ver() { (cd "$root/scripts/payload" && go list -m -f '{{.Version}}' "$1"); }

# runc checks seccomp profiles, which the kubelet always asks for, so it needs
# libseccomp (cgo) and is linked statically to run on any host.
if [ ! -e /usr/include/seccomp.h ]; then
	echo "build-payload: runc needs libseccomp headers: apt-get install libseccomp-dev" >&2
	exit 1
fi
(cd scripts/payload && CGO_ENABLED=1 $cross go build -tags "seccomp netgo osusergo" \
	-ldflags "-s -w -X main.version=$(ver github.com/opencontainers/runc | sed 's/^v//') -extldflags -static" \
	-o "$tmp/bin/runc" github.com/opencontainers/runc)

# containerd, the shim and the plugins need no libc: build them without cgo
# so they are static too (containerd then has no btrfs snapshotter, as in
# its own static releases; the node uses overlayfs). containerd is a
# program of its own, not a command of skiff's: as one it ran every
# initialiser of Kubernetes' packages and mapped skiff's code, 82 MiB PSS
# against 48 a minute after Ready (/proc/<pid>/smaps_rollup, one start).
# Their mains are ours (scripts/payload/containerd and
# containerd-shim-runc-v2): upstream's, plus the settle step skiff runs too.
(cd scripts/payload && CGO_ENABLED=0 $cross go build \
	-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$(ver github.com/containerd/containerd/v2)" \
	-o "$tmp/bin/" ./containerd ./containerd-shim-runc-v2)
(cd scripts/payload && CGO_ENABLED=0 $cross go build \
	-ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$(ver github.com/containernetworking/plugins)" \
	-o "$tmp/bin/" \
	github.com/containernetworking/plugins/plugins/main/bridge \
	github.com/containernetworking/plugins/plugins/main/loopback \
	github.com/containernetworking/plugins/plugins/ipam/host-local \
	github.com/containernetworking/plugins/plugins/meta/portmap \
	github.com/containernetworking/plugins/plugins/meta/bandwidth \
	github.com/containernetworking/plugins/plugins/meta/firewall)

(cd "$tmp/bin" && sha256sum -- * > "$tmp/SHA256SUMS")
# zstd -19: 40% smaller than gzip -6 (11 MiB here) and unpacked at the
# first start several times faster. It takes ~12 s, so an unchanged set of
# programs keeps the archive it has.
if ! cmp -s "$tmp/SHA256SUMS" "$out/SHA256SUMS" || [ ! -e "$out/bin.tar.zst" ]; then
	command -v zstd >/dev/null || { echo "build-payload: needs zstd: apt-get install zstd" >&2; exit 1; }
	tar -C "$tmp" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - bin SHA256SUMS | zstd -q -19 -T0 > "$tmp/bin.tar.zst"
	cp "$tmp/bin.tar.zst" "$out/bin.tar.zst"
fi
rm -f "$out/bin.tar.gz" # the archive of earlier builds

scripts/pause-image.sh "$tmp/pause.tar" "$arch"

# CoreDNS, metrics-server and skiff-ingress (Caddy configured from
# Ingresses), the coredns, metrics-server and ingress add-ons' images: one
# static program that runs as any of them, by the name of the link it is
# started through (see scripts/payload/addons). The images are made from the
# same directory, so their one layer is the same blob: containerd unpacks it
# once, and the pods share its pages.
addon_version() { (cd scripts/payload/addons && go list -m -f '{{.Version}}' "$1"); }
mkdir -p "$tmp/addons"
(cd scripts/payload/addons && CGO_ENABLED=0 $cross go build -ldflags "-s -w" -o "$tmp/addons/addons" .)
for name in coredns metrics-server skiff-ingress; do
	ln -s addons "$tmp/addons/$name"
done
addon_image() { # archive image-name entrypoint
	go run ./scripts/mkimage -arch "$arch" -name "$2" -rootfs "$tmp/addons" -entrypoint "$3" -o "$tmp/$1"
}
addon_image coredns.tar "localhost/skiff/coredns:$(addon_version github.com/coredns/coredns)" /coredns
addon_image metrics-server.tar "localhost/skiff/metrics-server:$(addon_version sigs.k8s.io/metrics-server)" /metrics-server
addon_image ingress.tar "localhost/skiff/ingress-caddy:$(addon_version github.com/caddyserver/caddy/v2)" /skiff-ingress

# The images' digests, so the agent knows each one's content at start
# without reading it.
(cd "$tmp" && sha256sum pause.tar coredns.tar metrics-server.tar ingress.tar) > "$tmp/images.sums"

replace() { cmp -s "$1" "$2" || cp "$1" "$2"; }
replace "$tmp/SHA256SUMS" "$out/SHA256SUMS"
replace "$tmp/pause.tar" "$out/images/pause.tar"
replace "$tmp/coredns.tar" "$out/images/coredns.tar"
replace "$tmp/metrics-server.tar" "$out/images/metrics-server.tar"
replace "$tmp/ingress.tar" "$out/images/ingress.tar"
replace "$tmp/images.sums" "$out/images/SHA256SUMS"
ls -l "$out" "$out/images"
