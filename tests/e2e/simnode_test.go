package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
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

	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "skiff.dev/simulated=true"})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, n := range list.Items {
			if len(n.Spec.Taints) == 0 && n.Spec.PodCIDR != "" && isNodeReady(&n) {
				ready++
			}
		}
		return ready == nodes, nil
	})
	if err != nil {
		t.Fatalf("%d simulated nodes not all Ready, untainted and with a pod CIDR: %v", nodes, err)
	}

	start := time.Now()
	createPods(t, ctx, c, pods)
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

func isNodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// createPods creates n pods from 16 goroutines.
func createPods(t *testing.T, ctx context.Context, c kubernetes.Interface, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("scale-%d", i), Labels: map[string]string{"app": "scale"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
				}
				if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("creating pods: %v", err)
	}
}
