package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
)

var helmCharts = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmcharts"}

// demoChart is a chart of one ConfigMap whose data comes from its values.
var demoChart = map[string]string{
	"demo/Chart.yaml":               "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
	"demo/values.yaml":              "greeting: hello\n",
	"demo/templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
}

// TestHelmChart: k3s's HelmChart, from the manifests directory. A chart
// beside it is installed, upgraded when the HelmChart is edited and when a
// HelmChartConfig adds values, and uninstalled when the file goes; a
// broken chart gives a Failed condition and an event, and charts after it
// still install.
func TestHelmChart(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	rc := mustRESTConfig(t, s)
	c := kubernetes.NewForConfigOrDie(rc)
	dyn := dynamic.NewForConfigOrDie(rc)
	dir := filepath.Join(s.DataDir, "server", "manifests")
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range demoChart {
		write(filepath.Join("charts", name), content)
	}
	helmChart := func(name, greeting string) string {
		return fmt.Sprintf(`apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: %s
  namespace: kube-system
spec:
  chart: charts/demo
  targetNamespace: helm-demo
  createNamespace: true
  valuesContent: |
    greeting: %s
`, name, greeting)
	}
	greeting := func(name, want string) {
		t.Helper()
		start := time.Now()
		var got string
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			cm, err := c.CoreV1().ConfigMaps("helm-demo").Get(ctx, name, metav1.GetOptions{})
			got = "(absent)"
			if err == nil {
				got = cm.Data["greeting"]
			}
			return got == want, nil
		})
		if err != nil {
			t.Fatalf("ConfigMap helm-demo/%s greeting %q, want %q", name, got, want)
		}
		t.Logf("ConfigMap helm-demo/%s greeting %q after %s", name, want, time.Since(start).Round(time.Millisecond))
	}

	write("demo.yaml", helmChart("demo", "hello"))
	greeting("demo", "hello")
	if got := releaseSecrets(t, ctx, c, "demo"); len(got) != 1 || got[0] != "1/deployed" {
		t.Errorf("release demo records %v, want [1/deployed]", got)
	}
	waitEvent(t, ctx, c, "demo", "Installed")
	if failed := failedCondition(t, ctx, dyn, "demo"); failed != "False" {
		t.Errorf("HelmChart demo Failed condition %q, want False", failed)
	}

	write("demo.yaml", helmChart("demo", "bye"))
	greeting("demo", "bye")
	waitEvent(t, ctx, c, "demo", "Upgraded")
	if got := strings.Join(releaseSecrets(t, ctx, c, "demo"), " "); !strings.Contains(got, "1/superseded") || !strings.Contains(got, "2/deployed") {
		t.Errorf("release demo records %s, want 1/superseded and 2/deployed", got)
	}

	write("demo-config.yaml", `apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata:
  name: demo
  namespace: kube-system
spec:
  valuesContent: |
    greeting: configured
`)
	greeting("demo", "configured")

	// A chart whose template does not render, and one that is not there.
	broken := map[string]string{
		"broken/Chart.yaml":         "apiVersion: v2\nname: broken\nversion: 0.1.0\n",
		"broken/templates/bad.yaml": "{{ .Values.x | nosuchfunction }}\n",
	}
	write("broken.yaml", fmt.Sprintf(`apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata: {name: broken, namespace: kube-system}
spec:
  targetNamespace: helm-demo
  chartContent: %s
---
apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata: {name: missing, namespace: kube-system}
spec:
  chart: charts/not-there
`, base64.StdEncoding.EncodeToString(chartArchive(t, broken))))
	waitEvent(t, ctx, c, "broken", "InstallFailed")
	waitEvent(t, ctx, c, "missing", "ChartFailed")
	for _, name := range []string{"broken", "missing"} {
		if failed := failedCondition(t, ctx, dyn, name); failed != "True" {
			t.Errorf("HelmChart %s Failed condition %q, want True", name, failed)
		}
	}
	// Charts after them still install, from spec.chartContent too.
	write("after.yaml", fmt.Sprintf(`apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata: {name: after, namespace: kube-system}
spec:
  targetNamespace: helm-demo
  chartContent: %s
  set: {greeting: after}
`, base64.StdEncoding.EncodeToString(chartArchive(t, demoChart))))
	greeting("after", "after")
	greeting("demo", "configured")

	// Deleting the file deletes the HelmChart, which uninstalls its release.
	if err := os.Remove(filepath.Join(dir, "demo.yaml")); err != nil {
		t.Fatal(err)
	}
	greeting("demo", "(absent)")
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := dyn.Resource(helmCharts).Namespace("kube-system").Get(ctx, "demo", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Error("HelmChart demo is still there after its file was removed")
	}
	if secrets := releaseSecrets(t, ctx, c, "demo"); len(secrets) != 0 {
		t.Errorf("release demo left its records: %v", secrets)
	}
	waitEvent(t, ctx, c, "demo", "Uninstalled")
	if out := kubectl(t, s, "get", "helmcharts", "-n", "kube-system"); !strings.Contains(out, "FAILED") || !strings.Contains(out, "broken") {
		t.Errorf("kubectl get helmcharts shows no Failed column:\n%s", out)
	}
}

// releaseSecrets lists a Helm release's records as "revision/status".
func releaseSecrets(t *testing.T, ctx context.Context, c kubernetes.Interface, release string) []string {
	t.Helper()
	list, err := c.CoreV1().Secrets("helm-demo").List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + release})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range list.Items {
		out = append(out, s.Labels["version"]+"/"+s.Labels["status"])
	}
	return out
}

// waitEvent waits for an event with reason about the HelmChart name.
func waitEvent(t *testing.T, ctx context.Context, c kubernetes.Interface, name, reason string) {
	t.Helper()
	var last []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.CoreV1().Events("kube-system").List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=HelmChart,involvedObject.name=" + name})
		if err != nil {
			return false, nil
		}
		last = last[:0]
		for _, e := range list.Items {
			last = append(last, e.Reason+": "+e.Message)
			if e.Reason == reason {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no %s event for HelmChart %s; events: %q", reason, name, last)
		return
	}
	t.Logf("HelmChart %s: %s", name, last[len(last)-1])
}

func failedCondition(t *testing.T, ctx context.Context, dyn dynamic.Interface, name string) string {
	t.Helper()
	var status string
	_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		u, err := dyn.Resource(helmCharts).Namespace("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Failed" {
				status, _ = m["status"].(string)
				return true, nil
			}
		}
		return false, nil
	})
	return status
}

// chartArchive packs chart files (paths under the chart's directory) with
// Helm's own packager, as `helm package` does.
func chartArchive(t *testing.T, files map[string]string) []byte {
	t.Helper()
	src := t.TempDir()
	var top string
	for name, content := range files {
		top, _, _ = strings.Cut(name, "/")
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := loader.LoadDir(filepath.Join(src, top))
	if err != nil {
		t.Fatal(err)
	}
	path, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
