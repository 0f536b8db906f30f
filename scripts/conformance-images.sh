#!/bin/sh
# Usage: scripts/conformance-images.sh BINDIR OUTDIR
#
# Builds, as OCI archives in OUTDIR, every image the [Conformance] specs of
# Kubernetes' e2e suite run, under the names the suite asks for, so that a
# node which imports them never pulls (there is no registry here). BINDIR
# holds the Go programs `make conformance-bin` built from the suite's module
# (tests/conformance): agnhost, nonewprivs, sample-apiserver and etcd.
#
# The suite's Dockerfiles start from BusyBox, Alpine or Debian images; these
# start from upstream BusyBox (scripts/busybox-upstream.sh, the shell and
# tools of BusyBox and Alpine images) plus, where the specs run a glibc
# program (dig, curl, nginx), that Debian package and its dependencies
# unpacked with dpkg-deb, never installed on this host.
set -eu
if [ $# -ne 2 ]; then
	echo "usage: $0 BINDIR OUTDIR" >&2
	exit 2
fi
bin=$(realpath "$1")
out=$(realpath -m "$2")
cd "$(dirname "$0")/.."
k8s=$(cd tests/conformance && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
e2e=registry.k8s.io/e2e-test-images
umask 022 # file modes go into the layers
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out" "$tmp/debs"

for p in agnhost nonewprivs sample-apiserver etcd; do
	[ -x "$bin/$p" ] || { echo "conformance-images: $bin/$p missing: run make conformance-bin" >&2; exit 1; }
done

# debian DIR PKG...: unpacks PKG and everything it depends on (this
# machine's architecture) into DIR. Maintainer scripts do not run: the
# images need the programs and their libraries, not a dpkg database.
debian() {
	dir=$1
	shift
	pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances "$@" | grep '^[a-z0-9]' | grep -v : | sort -u)
	# Package lists a day old may name versions the mirror no longer has.
	# shellcheck disable=SC2086 # one word per package
	(cd "$tmp/debs" && apt-get download -q $pkgs >/dev/null 2>&1) ||
		{ [ "$(id -u)" = 0 ] && apt-get update -q >/dev/null && (cd "$tmp/debs" && apt-get download -q $pkgs >/dev/null); } || {
		echo "conformance-images: apt-get download of $* and its dependencies failed: run apt-get update" >&2
		exit 1
	}
	for p in $pkgs; do
		for deb in "$tmp/debs/${p}_"*.deb; do
			dpkg-deb -x "$deb" "$dir"
		done
	done
	# Docs, manuals and locales only make the layer bigger.
	rm -rf "$dir/usr/share/doc" "$dir/usr/share/man" "$dir/usr/share/info" "$dir/usr/share/locale"
}

# These images are imported, never embedded: a fast zstd level, not 19.
go build -o "$tmp/mkimage" ./scripts/mkimage
image() { # image NAME ROOTFS ARCHIVE mkimage-flags...
	name=$1 root=$2 archive=$3
	shift 3
	"$tmp/mkimage" -zstd-level 3 -name "$name" -rootfs "$root" \
		-env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" -o "$out/$archive"
	echo "conformance-images: $name"
}

scripts/pause-image.sh "$out/pause.tar" "$(go env GOARCH)" registry.k8s.io/pause:3.10.2

busybox=$bin/busybox
scripts/busybox-upstream.sh "$busybox"
rootfs() { # rootfs DIR [PKG...]: BusyBox, and the Debian packages PKG
	dir=$1
	shift
	[ $# = 0 ] || debian "$dir" "$@"
	scripts/busybox-rootfs.sh "$dir" "$busybox"
}

bb=$tmp/busybox
rootfs "$bb"
image "$e2e/busybox:1.37.0-2" "$bb" busybox.tar -cmd sh

# agnhost: the DNS and service specs run dig, getent, curl and nc in it
# beside its own subcommands; porter serves TLS with the suite's localhost
# pair; some specs expect the user and group its Dockerfile adds. 2.55,
# which a few specs name, is the same image under that tag.
agn=$tmp/agnhost
mkdir -p "$agn/bin"
ln -s nc.openbsd "$agn/bin/nc" # the link Debian's postinst would make
rootfs "$agn" bind9-dnsutils curl netcat-openbsd iproute2 bash libc-bin
cp "$bin/agnhost" "$agn/agnhost"
ln -s agnhost "$agn/agnhost-2"
cp "$k8s/test/images/agnhost/porter/localhost.crt" "$k8s/test/images/agnhost/porter/localhost.key" "$agn/"
mkdir -p "$agn/uploads"
echo 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' >>"$agn/etc/passwd"
printf 'user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n' >>"$agn/etc/group"
chmod -R u+w "$agn"
for v in 2.66.1 2.55; do
	image "$e2e/agnhost:$v" "$agn" "agnhost-$v.tar" -entrypoint /agnhost -cmd pause
done

# kitten and nautilus: agnhost serving a picture.
for pic in kitten nautilus; do
	cp "$k8s/test/images/$pic/html/$pic.jpg" "$k8s/test/images/$pic/html/data.json" "$agn/"
	image "$e2e/$pic:1.8" "$agn" "$pic.tar" -entrypoint /agnhost -cmd test-webserver
	rm "$agn/$pic.jpg" "$agn/data.json"
done

# glibc-dns-testing: Debian's dig, nslookup and getent (glibc's resolver).
dns=$tmp/dns
rootfs "$dns" bind9-dnsutils libc-bin
image "$e2e/glibc-dns-testing:2.1.1" "$dns" glibc-dns-testing.tar -cmd sh

# nginx: Debian's, serving a page on port 80 in the foreground, as the
# upstream image (nginx:1.27-alpine) does.
ngx=$tmp/nginx
rootfs "$ngx" nginx-light
mkdir -p "$ngx/usr/share/nginx/html" "$ngx/var/lib/nginx" "$ngx/var/log/nginx" "$ngx/run"
echo '<html><body>Welcome to nginx!</body></html>' >"$ngx/usr/share/nginx/html/index.html"
cat >"$ngx/etc/nginx/nginx.conf" <<'EOF'
daemon off;
error_log stderr;
pid /run/nginx.pid;
events {}
http {
	include /etc/nginx/mime.types;
	access_log /dev/stdout;
	server {
		listen 80;
		root /usr/share/nginx/html;
	}
}
EOF
image "$e2e/nginx:1.27.0-2" "$ngx" nginx.tar -entrypoint /usr/sbin/nginx

# nonewprivs: a set-user-ID program that reports whether it gained root.
nnp=$tmp/nonewprivs
rootfs "$nnp"
mkdir -p "$nnp/usr/local/bin"
cp "$bin/nonewprivs" "$nnp/usr/local/bin/nnp"
chmod 4755 "$nnp/usr/local/bin/nnp"
image "$e2e/nonewprivs:1.4" "$nnp" nonewprivs.tar -cmd nnp

# The aggregator spec's sample API server and the etcd it stores in.
api=$tmp/sample-apiserver
rootfs "$api"
cp "$bin/sample-apiserver" "$api/sample-apiserver"
image "$e2e/sample-apiserver:1.29.2" "$api" sample-apiserver.tar -entrypoint /sample-apiserver
etcd=$tmp/etcd
rootfs "$etcd"
mkdir -p "$etcd/usr/local/bin"
cp "$bin/etcd" "$etcd/usr/local/bin/etcd"
image registry.k8s.io/etcd:3.7.0-0 "$etcd" etcd.tar -cmd /usr/local/bin/etcd
ls -l "$out"
