#!/bin/sh
# Removes what `make test` and `make bench` runs of this checkout may have
# left when a test was killed: skiff processes, and the pods, mounts,
# interfaces and netfilter rules of their node agents. A test that passes
# cleans up after itself; this is the net under it. Run as root.
set -u
cd "$(dirname "$0")/.." || exit 1
pkill -f "$PWD/bin/skiff server" 2>/dev/null
pkill -f "$PWD/dist/skiff-" 2>/dev/null
for dir in /tmp/Test*/*/data /tmp/Test*/*/data/ /tmp/skiff-bench-*/*; do
	[ -d "$dir/agent" ] && SKIFF_DATA_DIR=$dir scripts/skiff-killall.sh
done
scripts/skiff-killall.sh
exit 0
