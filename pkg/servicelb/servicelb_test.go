package servicelb

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-dev/skiff/pkg/simnode"
)

func node(name, ip string, ready bool, labels map[string]string) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}},
		},
	}
}

func TestAddressesLoadBalancers(t *testing.T) {
	lb := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	classed := lb.DeepCopy()
	classed.Name, classed.Spec.LoadBalancerClass = "other", new("example.com/lb")
	plain := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "default"}}
	client := fake.NewClientset(lb, classed, plain,
		node("b", "192.0.2.3", true, nil), node("a", "192.0.2.2", true, nil),
		node("down", "192.0.2.9", false, nil), node("sim", "198.18.0.1", true, map[string]string{simnode.LabelSimulated: "true"}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Run(ctx, client) //nolint:errcheck
	var got []corev1.LoadBalancerIngress
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
		got = svc.Status.LoadBalancer.Ingress
		return err == nil && len(got) > 0, nil
	})
	if err != nil || len(got) != 2 || got[0].IP != "192.0.2.2" || got[1].IP != "192.0.2.3" {
		t.Fatalf("ingress %+v (%v), want the two Ready real nodes in order", got, err)
	}
	for _, name := range []string{"other", "plain"} {
		svc, _ := client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if len(svc.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("%s got an address: %+v", name, svc.Status.LoadBalancer.Ingress)
		}
	}
}
