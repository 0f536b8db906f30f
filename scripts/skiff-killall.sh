#!/bin/sh
# Stops everything skiff started on this host and removes what it set up:
# the skiff processes, containerd, the runc shims and every container under
# them, their mounts, network namespaces, the pod bridge and veths, and the
# netfilter rules of kube-proxy and the CNI plugins. The data dir itself is
# kept (uninstall removes it). SKIFF_DATA_DIR names a non-default data dir.
#
# Like k3s-killall.sh, it is safe to run when nothing is running.
#
# Lists of pids, and nft's "family table", are split on blanks on purpose:
# shellcheck disable=SC2086,SC2046
set -u
[ "$(id -u)" -eq 0 ] || { echo "skiff-killall: run as root" >&2; exit 1; }
DATA_DIR=${SKIFF_DATA_DIR:-/var/lib/skiff}
RUN_DIR=/run/skiff
KUBELET_DIR=/var/lib/kubelet

# descendants PID...: every process below the given ones.
descendants() {
	ps -e -o pid= -o ppid= | awk -v roots=" $* " '
		{ parent[$1] = $2; pids[NR] = $1 }
		END {
			split(roots, r, " "); for (i in r) keep[r[i]] = 1
			changed = 1
			while (changed) {
				changed = 0
				for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } }
			}
			for (p in keep) print p
		}'
}

# The skiff processes (server, agent) and this data dir's containerd: the
# payload's <data-dir>/data/<hash>/bin/containerd, or `skiff containerd
# --config <data-dir>/agent/...` as earlier versions ran it.
skiff_pids() {
	ps -e -o pid= -o args= | awk -v d="$DATA_DIR" '
		$2 ~ /(^|\/)skiff$/ && ($3 == "server" || $3 == "agent" || ($3 == "containerd" && index($0, d "/agent/"))) { print $1 }
		index($2, d "/data/") == 1 && $2 ~ /\/bin\/containerd$/ { print $1 }'
}

# The runc shims started from this data dir's payload.
shim_pids() {
	ps -e -o pid= -o args= | awk -v d="$DATA_DIR/data/" 'index($2, d) == 1 && $2 ~ /containerd-shim/ { print $1 }'
}

pids=$(skiff_pids)
if [ -n "$pids" ]; then
	kill -TERM $pids 2>/dev/null
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		[ -z "$(skiff_pids)" ] && break
		sleep 1
	done
	pids=$(skiff_pids)
	[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
fi

shims=$(shim_pids)
if [ -n "$shims" ]; then
	kill -KILL $(descendants $shims) 2>/dev/null
fi

# unmount_under DIR: unmount everything mounted at or below DIR, deepest first.
unmount_under() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}
unmount_under "$RUN_DIR"
unmount_under "$KUBELET_DIR"
unmount_under "$DATA_DIR/agent/containerd"
unmount_under /run/netns
for ns in $(ip netns list 2>/dev/null | awk '/^cni-/ { print $1 }'); do
	ip netns delete "$ns" 2>/dev/null || true
done

# The pod bridge and whatever veths are still attached to it, and the pod
# network's links between nodes (flannel's vxlan and WireGuard devices; their
# routes go with them).
if ip link show cni0 >/dev/null 2>&1; then
	for veth in $(ip -o link show master cni0 | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
		ip link delete "$veth" 2>/dev/null || true
	done
	ip link delete cni0 2>/dev/null || true
fi
for link in flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6; do
	ip link delete "$link" 2>/dev/null || true
done

# The nftables tables of kube-proxy, the CNI plugins and flannel, and the
# iptables chains of the same; everything else in the rule set is kept.
if command -v nft >/dev/null 2>&1; then
	for t in "ip kube-proxy" "ip6 kube-proxy" "inet cni_plugins_masquerade" "ip flannel-ipv4" "ip6 flannel-ipv6"; do
		nft delete table $t 2>/dev/null || true
	done
fi
for ipt in iptables ip6tables; do
	command -v "$ipt-save" >/dev/null 2>&1 || continue
	if "$ipt-save" 2>/dev/null | grep -qE 'KUBE-|CNI-|FLANNEL'; then
		"$ipt-save" | grep -vE 'KUBE-|CNI-|FLANNEL' | "$ipt-restore"
	fi
done
# The network policy controller's ipsets (kube-router's), now that no rule
# uses them.
if command -v ipset >/dev/null 2>&1; then
	for set in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?(KUBE-(SRC|DST)-|kube-router-)'); do
		ipset destroy "$set" 2>/dev/null || true
	done
fi
# The tables iptables-nft made for those chains, once they are empty: no
# rule, no chain but the built-in ones, every policy accept, so deleting
# them changes nothing but leaves the rule set as it was before skiff.
if command -v nft >/dev/null 2>&1; then
	for family in ip ip6; do
		for table in filter nat mangle raw security; do
			listing=$(nft list table "$family" "$table" 2>/dev/null) || continue
			if ! printf '%s\n' "$listing" | grep -qvE '^[[:space:]]*(table [a-z0-9]+ [a-z]+ \{|chain (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) \{|type [a-z]+ hook [a-z]+ priority [a-z0-9+-]+; policy accept;|\}|)$'; then
				nft delete table "$family" "$table"
			fi
		done
	done
fi

# Empty pod cgroups (rmdir fails harmlessly on any still in use).
for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
	[ -d "$root/kubepods" ] || [ -d "$root/kubepods.slice" ] || continue
	find "$root" -depth -type d \( -name 'kubepods*' -o -path '*kubepods*' \) -exec rmdir {} \; 2>/dev/null
done

rm -rf "$RUN_DIR" /var/lib/cni /run/flannel
exit 0
