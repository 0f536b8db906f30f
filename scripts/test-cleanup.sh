#!/bin/sh
# Removes what `make test` and `make bench` runs of this checkout may have
# left when a test was killed: skiff processes, and the pods, mounts,
# interfaces and netfilter rules of their node agents. A test that passes
# cleans up after itself; this is the net under it. Run as root.
set -u
cd "$(dirname "$0")/.." || exit 1
pkill -f "$PWD/bin/skiff server" 2>/dev/null
pkill -f "$PWD/bin/skiff agent" 2>/dev/null
pkill -f "$PWD/dist/skiff-" 2>/dev/null
for dir in /tmp/Test*/*/data /tmp/Test*/*/*/data /tmp/skiff-bench-*/* /tmp/skiff-bench-*/*/data; do
	[ -d "$dir/agent" ] && SKIFF_DATA_DIR=$dir scripts/skiff-killall.sh
done
# containerd and runc shims of a test whose data dir is gone (removed
# while they ran): their data dirs, from their command lines.
for dir in $(ps -e -o args= | sed -n 's#^\(/tmp/[^ ]*\)/data/[0-9a-f]*/bin/containerd\(-shim-runc-v2\)* .*#\1#p' | sort -u); do
	SKIFF_DATA_DIR=$dir scripts/skiff-killall.sh
done
# The multi-node harness's agents (tests/harness) have data dirs matched
# above; their network namespaces, bridges and cgroup roots are named
# skf<n>*, skiff-<agent>.
for ns in $(ip netns list 2>/dev/null | awk '/^skf[0-9]/ { print $1 }'); do
	ip netns delete "$ns"
done
for br in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '$2 ~ /^skf[0-9]/ { print $2 }'); do
	ip link delete "$br"
done
# Host ends of agents' veths (v<bridge><agent>) whose bridge is gone.
for veth in $(ip -o link show type veth 2>/dev/null | awk -F': ' '$2 ~ /^vskf[0-9]/ { sub(/@.*/, "", $2); print $2 }'); do
	ip link delete "$veth"
done
find /sys/fs/cgroup -maxdepth 2 -type d -name 'skiff-*' 2>/dev/null | while read -r root; do
	find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null
done
scripts/skiff-killall.sh
exit 0
