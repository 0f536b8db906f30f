package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestSimulatedNodesAtScale: 100 simulated nodes get 1000 pods Running with
// distinct IPs from their nodes' pod CIDRs, and deleting the pods removes
// them all.
func TestSimulatedNodesAtScale(t *testing.T) {
	const nodes, pods = 100, 1000
	s := startServer(t, "--datastore-endpoint", "memory://", "--simulated-nodes", fmt.Sprint(nodes),
		"--kube-scheduler-arg", "kube-api-qps=200", "--kube-scheduler-arg", "kube-api-burst=400")
	rc, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	rc.QPS, rc.Burst = 500, 1000
	c := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()

	// The node lifecycle controller lifts its not-ready taint on its own
	// schedule (tens of seconds after registration).
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "skiff.dev/simulated=true"})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, n := range list.Items {
			if len(n.Spec.Taints) == 0 && n.Spec.PodCIDR != "" && harness.NodeReady(&n) {
				ready++
			}
		}
		return ready == nodes, nil
	})
	if err != nil {
		t.Fatalf("%d simulated nodes not all Ready, untainted and with a pod CIDR: %v", nodes, err)
	}

	start := time.Now()
	if err := harness.CreatePods(ctx, c, "default", "scale", pods); err != nil {
		t.Fatalf("creating pods: %v", err)
	}
	var running int
	err = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=scale"})
		if err != nil {
			return false, err
		}
		running = 0
		ips := map[string]bool{}
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && !ips[p.Status.PodIP] {
				ips[p.Status.PodIP] = true
				running++
			}
		}
		return running == pods, nil
	})
	if err != nil {
		t.Fatalf("%d of %d pods Running with distinct IPs: %v", running, pods, err)
	}
	t.Logf("%d pods Running on %d simulated nodes %s after the first was created", pods, nodes, time.Since(start).Round(time.Millisecond))

	if err := c.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=scale"}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=scale"})
		return err == nil && len(list.Items) == 0, err
	})
	if err != nil {
		t.Fatalf("pods on simulated nodes not gone after deletion: %v", err)
	}
}
