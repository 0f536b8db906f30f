package simnode

import (
	"context"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
)

func TestPodsOnSimulatedNodesRunWithAddressesFromTheNodeCIDR(t *testing.T) {
	client := fake.NewClientset()
	cfg := DefaultConfig()
	cfg.Count, cfg.Version = 2, "v1.37.2"
	cfg.Labels = map[string]string{"tier": "sim"}
	cfg.Taints = []corev1.Taint{{Key: "dedicated", Value: "sim", Effect: corev1.TaintEffectNoSchedule}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := Run(ctx, client, cfg); err != nil {
			t.Error(err)
		}
	}()

	var node *corev1.Node
	poll(t, "simulated nodes registered", func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, "skiff-sim-1", metav1.GetOptions{})
		node = n
		return err == nil && len(n.Status.Conditions) > 0, nil
	})
	if node.Labels[LabelSimulated] != "true" || node.Labels["tier"] != "sim" || len(node.Spec.Taints) != 1 {
		t.Errorf("node labels %v taints %v", node.Labels, node.Spec.Taints)
	}
	if got := node.Status.Allocatable[corev1.ResourcePods]; got.String() != "110" {
		t.Errorf("pod capacity %s", got.String())
	}
	if ip := nodeIP(node); !net.ParseIP(ip).Equal(net.ParseIP("198.18.0.2")) {
		t.Errorf("node address %s, want 198.18.0.2 in the benchmark range", ip)
	}
	// kube-controller-manager's node-ipam controller would do this.
	node.Spec.PodCIDR = "10.42.1.0/24"
	if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
			Spec:       corev1.PodSpec{NodeName: "skiff-sim-1", Containers: []corev1.Container{{Name: "c", Image: "img"}}},
		}
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ips := map[string]bool{}
	poll(t, "pods Running", func(ctx context.Context) (bool, error) {
		list, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		clear(ips)
		for _, p := range list.Items {
			if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != 1 || !p.Status.ContainerStatuses[0].Ready {
				return false, nil
			}
			ips[p.Status.PodIP] = true
		}
		return len(ips) == 2, nil
	})
	_, cidr, _ := net.ParseCIDR("10.42.1.0/24")
	for ip := range ips {
		if !cidr.Contains(net.ParseIP(ip)) || ip == "10.42.1.0" || ip == "10.42.1.1" {
			t.Errorf("pod IP %s is not a pod address of %s", ip, cidr)
		}
	}
	lease, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "skiff-sim-0", metav1.GetOptions{})
	if err != nil || lease.Spec.RenewTime == nil {
		t.Errorf("no heartbeat lease: %v", err)
	}
}

func TestAddressesAreReusedAfterRelease(t *testing.T) {
	s := &Simulator{ips: map[string]*podIPs{"n": {used: map[string]string{}}}, owner: map[string]string{}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Spec: corev1.NodeSpec{PodCIDR: "10.42.0.0/30"}}
	first, err := s.allocate("ns/a", node, false)
	if err != nil || first != "10.42.0.2" {
		t.Fatalf("first address %q %v; a /30 has one pod address, .2", first, err)
	}
	if _, err := s.allocate("ns/b", node, false); err == nil {
		t.Fatal("a full pod CIDR handed out another address")
	}
	s.release("ns/a")
	if again, err := s.allocate("ns/b", node, false); err != nil || again != first {
		t.Fatalf("after release: %q %v", again, err)
	}
}

func poll(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 20*time.Second, true, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
