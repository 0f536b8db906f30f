package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

// TestAddons checks what a fresh cluster offers out of the box: cluster DNS,
// Services reachable from pods and from the host (ClusterIP, NodePort,
// LoadBalancer on the node's address), Ingress on the node's ports 80 and
// 443, local storage, metrics, and the manifests directory.
func TestAddons(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the node agent needs root")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := harness.BuildBusybox(filepath.Join(dataDir, "agent", "images", "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, dataDir)
	s.Agent = true
	t.Cleanup(func() { killall(t, s) })
	started := time.Now()
	mustStart(t, s)
	ctx := context.Background()
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	waitNodeReady(t, ctx, c, time.Time{})
	waitDeploymentAvailable(t, ctx, c, "kube-system", "coredns")

	t.Run("services and DNS", func(t *testing.T) { checkServices(t, ctx, c, s) })
	t.Run("ingress", func(t *testing.T) { checkIngress(t, ctx, c) })
	t.Run("manifests directory", func(t *testing.T) { checkManifests(t, ctx, c, s) })
	t.Run("local storage", func(t *testing.T) { checkLocalStorage(t, ctx, c, s) })
	t.Run("kubectl top", func(t *testing.T) { checkTop(t, s, started) })
	// NetworkPolicies are enforced by default (TestMultiNode checks how).
	if rules := policyRules(t); !strings.Contains(rules, "KUBE-ROUTER-FORWARD") {
		t.Errorf("no network policy chains in the filter table:\n%s", rules)
	}

	mustStop(t, s)
	s.Args = append(s.Args, "--disable", "coredns", "--disable-network-policy")
	mustStart(t, s)
	c = kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return len(coreDNSObjects(ctx, c)) == 0, nil
	})
	if err != nil {
		t.Errorf("--disable coredns left: %v", coreDNSObjects(ctx, c))
	}
	// --disable-network-policy removes the rules an earlier start made.
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return !strings.Contains(policyRules(t), "KUBE-ROUTER"), nil
	})
	if err != nil {
		t.Errorf("--disable-network-policy left the network policy chains:\n%s", policyRules(t))
	}
}

// policyRules is the host's iptables filter table.
func policyRules(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "filter").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v\n%s", err, out)
	}
	return string(out)
}

func waitDeploymentAvailable(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas > 0 && d.Status.AvailableReplicas == d.Status.Replicas, nil
	})
	if err != nil {
		t.Fatalf("deployment %s/%s not available: %v", ns, name, err)
	}
}

// checkServices runs busybox httpd behind a LoadBalancer Service (which is
// also a NodePort and a ClusterIP Service) and reaches it from a pod by
// name and from the host by every address.
func checkServices(t *testing.T, ctx context.Context, c kubernetes.Interface, s *harness.Server) {
	const ns = "apps"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	d := httpdDeployment("web", 2, labels, "sh", "-c",
		"echo web-ok > /var/www/index.html; mkdir /var/www/shop; echo shop-ok > /var/www/shop/index.html; exec busybox httpd -f -p 8080 -h /var/www")
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: labels,
			Ports:    []corev1.ServicePort{{Port: 8088, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDeploymentAvailable(t, ctx, c, ns, "web")

	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "c", Image: busyboxImage, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}}},
		},
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, ctx, c, ns, client.Name)
	// busybox's nslookup does not apply the search path; its libc
	// resolver (wget below) does.
	if out := kubectl(t, s, "exec", "-n", ns, "client", "--", "nslookup", "kubernetes.default.svc.cluster.local"); !strings.Contains(out, "10.43.0.1") {
		t.Errorf("nslookup kubernetes.default.svc.cluster.local:\n%s", out)
	}
	for _, url := range []string{"http://web:8088/", "http://web.apps.svc.cluster.local:8088/"} {
		// busybox 1.35's wget crashes with -T and with -O- on this
		// image; a file is fine.
		out := kubectl(t, s, "exec", "-n", ns, "client", "--", "sh", "-c", "wget -q -O /tmp/body "+url+" && cat /tmp/body")
		if !strings.Contains(out, "web-ok") {
			t.Errorf("wget %s from a pod: %q", url, out)
		}
	}

	got, err := c.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	httpGet(t, fmt.Sprintf("http://%s:8088/", got.Spec.ClusterIP), "web-ok")
	node := nodeIP(t, ctx, c)
	httpGet(t, fmt.Sprintf("http://%s:%d/", node, got.Spec.Ports[0].NodePort), "web-ok")
	var lbIP string
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := c.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil || len(got.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		lbIP = got.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	})
	if err != nil || lbIP != node {
		t.Fatalf("LoadBalancer address %q, want the node's %s", lbIP, node)
	}
	httpGet(t, fmt.Sprintf("http://%s:8088/", lbIP), "web-ok")
}

func nodeIP(t *testing.T, ctx context.Context, c kubernetes.Interface) string {
	t.Helper()
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("nodes: %v", err)
	}
	for _, a := range nodes.Items[0].Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	t.Fatal("node has no InternalIP")
	return ""
}

// checkManifests drops a manifest into the manifests directory, removes it,
// and drops a broken one beside a good one.
func checkManifests(t *testing.T, ctx context.Context, c kubernetes.Interface, s *harness.Server) {
	dir := filepath.Join(s.DataDir, "server", "manifests")
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	configMap := func(name string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: default\ndata:\n  k: v\n", name)
	}
	exists := func(name string, want bool) {
		t.Helper()
		start := time.Now()
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := c.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
			return (err == nil) == want && (want || apierrors.IsNotFound(err)), nil
		})
		if err != nil {
			t.Fatalf("ConfigMap %s present=%v: not within 20s", name, want)
		}
		t.Logf("ConfigMap %s present=%v after %s", name, want, time.Since(start).Round(time.Millisecond))
	}
	write("dropped.yaml", configMap("dropped"))
	exists("dropped", true)
	if err := os.Remove(filepath.Join(dir, "dropped.yaml")); err != nil {
		t.Fatal(err)
	}
	exists("dropped", false)

	write("broken.yaml", "apiVersion: v1\nkind: [\n")
	write("after-broken.yaml", configMap("after-broken"))
	exists("after-broken", true)
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		events, err := c.CoreV1().Events("kube-system").List(ctx, metav1.ListOptions{FieldSelector: "reason=ApplyManifestFailed"})
		if err != nil {
			return false, nil
		}
		for _, e := range events.Items {
			if strings.Contains(e.Message, "broken.yaml") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Error("no ApplyManifestFailed event naming broken.yaml in kube-system")
	}
	// A skipped file is left alone.
	write("skipped.yaml", configMap("skipped"))
	write("skipped.yaml.skip", "")
	write("canary.yaml", configMap("canary"))
	exists("canary", true)
	if _, err := c.CoreV1().ConfigMaps("default").Get(ctx, "skipped", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a file with .skip beside it was applied: %v", err)
	}
}

// coreDNSObjects lists what the coredns add-on made that still exists.
func coreDNSObjects(ctx context.Context, c kubernetes.Interface) []string {
	var left []string
	sel := metav1.ListOptions{LabelSelector: "skiff.dev/manifest=coredns.yaml"}
	if l, err := c.AppsV1().Deployments("kube-system").List(ctx, sel); err == nil {
		for _, o := range l.Items {
			left = append(left, "deployment/"+o.Name)
		}
	}
	if l, err := c.CoreV1().Services("kube-system").List(ctx, sel); err == nil {
		for _, o := range l.Items {
			left = append(left, "service/"+o.Name)
		}
	}
	if l, err := c.CoreV1().ConfigMaps("kube-system").List(ctx, sel); err == nil {
		for _, o := range l.Items {
			left = append(left, "configmap/"+o.Name)
		}
	}
	if l, err := c.RbacV1().ClusterRoles().List(ctx, sel); err == nil {
		for _, o := range l.Items {
			left = append(left, "clusterrole/"+o.Name)
		}
	}
	if l, err := c.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"}); err == nil {
		for _, o := range l.Items {
			left = append(left, "pod/"+o.Name)
		}
	}
	return left
}

// checkLocalStorage binds a claim of the default class when a pod uses it,
// keeps its file across pods, and removes its directory with the claim.
func checkLocalStorage(t *testing.T, ctx context.Context, c kubernetes.Interface, s *harness.Server) {
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if _, err := c.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name, script string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				RestartPolicy:                 corev1.RestartPolicyNever,
				TerminationGracePeriodSeconds: ptr.To[int64](0),
				Containers: []corev1.Container{{Name: "c", Image: busyboxImage, ImagePullPolicy: corev1.PullNever,
					Command: []string{"sh", "-c", script}, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
			},
		}
	}
	run := func(name, script string) string {
		t.Helper()
		if _, err := c.CoreV1().Pods("default").Create(ctx, pod(name, script), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			p, err := c.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			return err == nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed), nil
		})
		if err != nil {
			t.Fatalf("pod %s did not finish: %v", name, err)
		}
		out := kubectl(t, s, "logs", name)
		if err := c.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	run("writer", "echo kept > /data/file")
	if out := run("reader", "cat /data/file"); strings.TrimSpace(out) != "kept" {
		t.Errorf("second pod read %q from the volume", out)
	}
	bound, err := c.CoreV1().PersistentVolumeClaims("default").Get(ctx, "data", metav1.GetOptions{})
	if err != nil || bound.Status.Phase != corev1.ClaimBound {
		t.Fatalf("claim not bound: %v %+v", err, bound.Status)
	}
	pv, err := c.CoreV1().PersistentVolumes().Get(ctx, bound.Spec.VolumeName, metav1.GetOptions{})
	if err != nil || pv.Spec.HostPath == nil {
		t.Fatalf("volume %s: %v", bound.Spec.VolumeName, err)
	}
	dir := pv.Spec.HostPath.Path
	if !strings.HasPrefix(dir, filepath.Join(s.DataDir, "storage")+"/") {
		t.Errorf("volume directory %s is not under the data dir's storage", dir)
	}
	if err := c.CoreV1().PersistentVolumeClaims("default").Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, statErr := os.Stat(dir)
		_, getErr := c.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return os.IsNotExist(statErr) && apierrors.IsNotFound(getErr), nil
	})
	if err != nil {
		t.Errorf("deleting the claim left its volume or directory %s", dir)
	}
}

// checkTop expects `kubectl top nodes` and `kubectl top pods -A` to print
// figures within a minute of the server's start.
func checkTop(t *testing.T, s *harness.Server, started time.Time) {
	for _, args := range [][]string{{"top", "nodes"}, {"top", "pods", "-A"}} {
		var out []byte
		err := wait.PollUntilContextTimeout(context.Background(), time.Second, time.Until(started.Add(time.Minute)), true, func(context.Context) (bool, error) {
			var err error
			out, err = exec.Command(s.Bin, append([]string{"kubectl", "--kubeconfig", s.Kubeconfig()}, args...)...).CombinedOutput()
			return err == nil && regexp.MustCompile(`\d+m\s+`).Match(out), nil
		})
		if err != nil {
			t.Fatalf("kubectl %v gave no figures within a minute of start:\n%s", args, out)
		}
		t.Logf("kubectl %v after %s:\n%s", args, time.Since(started).Round(time.Second), out)
	}
}
