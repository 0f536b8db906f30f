package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// BridgeName is the host bridge pods on this node attach to.
const BridgeName = "cni0"

// cniConfigName is the pod network's file in the CNI config directory.
const cniConfigName = "10-skiff.conflist"

// podNetworkConfig is the CNI configuration of a node's pods: a bridge with
// the node's slice of the cluster CIDR (host-local addresses, kept in the
// data dir so pods keep their IPs across restarts) and the MTU the pod
// network leaves room for, host ports and bandwidth limits. ipMasq has the
// bridge masquerade traffic leaving the node's slice; with flannel, which
// masquerades only traffic leaving the cluster CIDR, it is off, so that
// pods see each other's own addresses across nodes.
func podNetworkConfig(cfg *config.Agent, podCIDR string, mtu int, ipMasq bool) ([]byte, error) {
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      BridgeName,
		"isGateway":   true,
		"ipMasq":      ipMasq,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": podCIDR}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": filepath.Join(cfg.CNIStateDir(), "networks"),
		},
	}
	if mtu > 0 {
		bridge["mtu"] = mtu
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "skiff",
		"plugins": []any{
			bridge,
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
			map[string]any{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// waitPodCIDR waits until the controller-manager has given this node its
// pod CIDR.
func waitPodCIDR(ctx context.Context, cfg *config.Agent, client kubernetes.Interface) (string, error) {
	var podCIDR string
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		node, err := client.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil // the kubelet has not registered it yet
		}
		if err != nil {
			klog.V(2).InfoS("Reading the node for its pod CIDR", "err", err)
			return false, nil
		}
		podCIDR = node.Spec.PodCIDR
		return podCIDR != "", nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for node %s's pod CIDR: %w", cfg.NodeName, err)
	}
	return podCIDR, nil
}

// writePodNetwork writes the CNI configuration; containerd picks it up and
// the kubelet reports the node's network ready.
func writePodNetwork(cfg *config.Agent, podCIDR string, mtu int, ipMasq bool) error {
	data, err := podNetworkConfig(cfg, podCIDR, mtu, ipMasq)
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.CNIConfDir(), cniConfigName)
	if err := pki.WriteFileIfChanged(path, data, 0o644); err != nil {
		return fmt.Errorf("writing the CNI configuration: %w", err)
	}
	klog.InfoS("Wrote pod network configuration", "path", path, "podCIDR", podCIDR, "mtu", mtu)
	return nil
}
