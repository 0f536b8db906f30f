package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// checkNetworkPolicy enforces NetworkPolicies across nodes: web (on a2) is
// reached from a1 until a policy denies all its ingress; then one that
// allows a pod selector and a namespace selector lets those in and no
// other; an egress policy keeps a namespace's pods to web only; with the
// policies gone, everything is reachable again.
func (c *cluster) checkNetworkPolicy(t *testing.T, web, client *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "friends", Labels: map[string]string{"team": "friends"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	allowed := c.pinnedPod(t, "allowed", "skiff-a1", map[string]string{"role": "client"}, "sleep", "3600")
	friend := c.podIn(t, "friends", "friend", "skiff-a1", nil, "sleep", "3600")
	web2 := c.pinnedPod(t, "web2", "skiff-a1", map[string]string{"app": "web2"},
		"sh", "-c", "echo hello from web2 > /var/www/index.html; exec busybox httpd -f -p 8080 -h /var/www")
	webURL := "http://" + web.Status.PodIP + ":8080/"
	web2URL := "http://" + web2.Status.PodIP + ":8080/"

	policy := func(ns, name string, spec networkingv1.NetworkPolicySpec) {
		t.Helper()
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
		if _, err := c.client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	webPods := metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	for _, p := range []*corev1.Pod{client, allowed, friend} {
		c.waitReach(t, p, webURL, true)
	}

	policy("default", "web-deny", networkingv1.NetworkPolicySpec{PodSelector: webPods, PolicyTypes: ingress})
	for _, p := range []*corev1.Pod{client, allowed, friend} {
		c.waitReach(t, p, webURL, false)
	}
	c.waitReach(t, client, web2URL, true) // other pods keep their traffic

	port := intstr.FromInt32(8080)
	policy("default", "web-allow", networkingv1.NetworkPolicySpec{PodSelector: webPods, PolicyTypes: ingress,
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}},
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "friends"}}},
			},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: &port}},
		}}})
	c.waitReach(t, allowed, webURL, true)
	c.waitReach(t, friend, webURL, true)
	c.waitReach(t, client, webURL, false)

	// Egress: the friends namespace may reach web, and nothing else.
	policy("friends", "only-web", networkingv1.NetworkPolicySpec{
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "default"}},
			PodSelector:       &webPods,
		}}}},
	})
	c.waitReach(t, friend, web2URL, false)
	c.waitReach(t, friend, webURL, true)
	c.waitReach(t, allowed, web2URL, true)

	for ns, names := range map[string][]string{"default": {"web-deny", "web-allow"}, "friends": {"only-web"}} {
		for _, name := range names {
			if err := c.client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.waitReach(t, client, webURL, true)
	c.waitReach(t, friend, web2URL, true)
	for _, p := range []*corev1.Pod{allowed, web2} {
		if err := c.client.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
	}
	if err := c.client.CoreV1().Namespaces().Delete(ctx, "friends", metav1.DeleteOptions{}); err != nil {
		t.Error(err)
	}
}

// waitReach waits until url answers from pod (want) or is refused (not
// want): a policy takes effect within a sync of the controller.
func (c *cluster) waitReach(t *testing.T, pod *corev1.Pod, url string, want bool) {
	t.Helper()
	start := time.Now()
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		out, err := exec.Command(c.server.Bin, "kubectl", "--kubeconfig", c.server.Kubeconfig(), "exec", "-n", pod.Namespace, pod.Name, "--",
			"sh", "-c", "timeout 3 wget -q -O /tmp/body "+url+" && cat /tmp/body").CombinedOutput()
		if want {
			return err == nil && strings.Contains(string(out), "hello"), nil
		}
		// Refused: wget failed in the pod, not kubectl exec on the way.
		return err != nil && strings.Contains(string(out), "command terminated with exit code"), nil
	})
	verb := map[bool]string{true: "reaches", false: "is refused by"}[want]
	if err != nil {
		t.Errorf("%s/%s never %s %s within 30s", pod.Namespace, pod.Name, verb, url)
		return
	}
	t.Logf("%s/%s %s %s (after %s)", pod.Namespace, pod.Name, verb, url, time.Since(start).Round(100*time.Millisecond))
}

// podIn runs a busybox pod in namespace ns on node and waits for it to run.
func (c *cluster) podIn(t *testing.T, ns, name, node string, labels map[string]string, command ...string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "main", Image: busyboxImage, ImagePullPolicy: corev1.PullNever, Command: command}},
		},
	}
	if _, err := c.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return waitPodRunning(t, ctx, c.client, ns, name)
}
