package helmchart

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
)

func TestCRDsDecode(t *testing.T) {
	defs, err := crds()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range defs {
		names = append(names, d.Name)
		if d.Spec.Versions[0].Schema == nil {
			t.Errorf("%s has no schema", d.Name)
		}
	}
	if want := []string{"helmcharts.helm.cattle.io", "helmchartconfigs.helm.cattle.io"}; !reflect.DeepEqual(names, want) {
		t.Errorf("CRDs %v, want %v", names, want)
	}
}

// TestValuesOrder checks k3s's order: the chart's valuesContent, values
// and Secrets, then its HelmChartConfig's, then spec.set.
func TestValuesOrder(t *testing.T) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "vals", Namespace: "ns"},
		Data:       map[string][]byte{"a.yaml": []byte("fromSecret: yes\nlevel: secret\n")},
	}
	client := fake.NewClientset(secret)
	hc := &HelmChart{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns"}, Spec: ChartSpec{
		ValuesContent: "level: content\nnested: {a: 1, b: 1}\nonlyContent: x\n",
		Values:        []byte(`{"level": "values", "nested": {"b": 2}}`),
		ValuesSecrets: []SecretValues{{Name: "vals", Keys: []string{"a.yaml"}}, {Name: "absent", IgnoreUpdates: true}},
		Set: map[string]intstr.IntOrString{
			"replicas": intstr.FromInt32(3),
			"enabled":  intstr.FromString("True"),
			"list":     intstr.FromString("a,b"),
			"version":  intstr.FromString("1.10"),
		},
	}}
	cfg := &HelmChartConfig{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns"}, Spec: ConfigSpec{
		ValuesContent: "level: config\nnested: {c: 3}\n",
	}}
	vals, err := values(context.Background(), client, hc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"level": "config", "onlyContent": "x", "fromSecret": true,
		"nested":   map[string]any{"a": float64(1), "b": float64(2), "c": float64(3)},
		"replicas": int64(3), "enabled": true, "list": "a,b", "version": "1.10",
	}
	for k, w := range want {
		if got := vals[k]; !reflect.DeepEqual(normalise(got), normalise(w)) {
			t.Errorf("%s = %#v, want %#v", k, got, w)
		}
	}

	hc.Spec.ValuesSecrets = []SecretValues{{Name: "absent", Keys: []string{"x"}}}
	if _, err := values(context.Background(), client, hc, nil); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("a missing Secret that is not optional: %v", err)
	}
}

// normalise makes YAML's and JSON's numbers comparable.
func normalise(v any) any {
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case map[string]any:
		out := map[string]any{}
		for k, v := range n {
			out[k] = normalise(v)
		}
		return out
	}
	return v
}

func TestChartPathStaysInItsDirectory(t *testing.T) {
	d := Dirs{Manifests: "/data/server/manifests", StaticCharts: "/data/server/static/charts"}
	for chart, want := range map[string]string{
		"charts/demo":             "/data/server/manifests/charts/demo",
		"../../../etc/shadow":     "/data/server/manifests/etc/shadow",
		"/etc/passwd":             "/data/server/manifests/etc/passwd",
		staticChartsURL + "t.tgz": "/data/server/static/charts/t.tgz",
		staticChartsURL + "../x":  "/data/server/static/charts/x",
	} {
		got, err := d.chartPath(ChartSpec{Chart: chart})
		if err != nil || got != want {
			t.Errorf("chart %q: %q, %v; want %q", chart, got, err, want)
		}
	}
	for _, spec := range []ChartSpec{{Chart: "traefik", Repo: "https://traefik.github.io/charts"}, {Chart: "oci://r/x"}, {}} {
		if _, err := d.chartPath(spec); err == nil {
			t.Errorf("%+v: no error", spec)
		}
	}
}

func TestLoadChartFromDirectoryArchiveAndContent(t *testing.T) {
	dir := t.TempDir()
	d := Dirs{Manifests: dir}
	files := map[string]string{
		"demo/Chart.yaml":        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
		"demo/values.yaml":       "greeting: hello\n",
		"demo/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: demo}\ndata: {greeting: {{ .Values.greeting | quote }}}\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fromDir, err := d.loadChart(ChartSpec{Chart: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	archive := chartArchive(t, files)
	if err := os.WriteFile(filepath.Join(dir, "demo-0.1.0.tgz"), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	fromFile, err := d.loadChart(ChartSpec{Chart: "demo-0.1.0.tgz"})
	if err != nil {
		t.Fatal(err)
	}
	fromContent, err := d.loadChart(ChartSpec{ChartContent: base64.StdEncoding.EncodeToString(archive)})
	if err != nil {
		t.Fatal(err)
	}
	if fromFile.digest != fromContent.digest || fromDir.digest == fromFile.digest {
		t.Errorf("digests: dir %s, file %s, content %s", fromDir.digest, fromFile.digest, fromContent.digest)
	}

	// A change of any file in the directory changes its digest.
	if err := os.WriteFile(filepath.Join(dir, "demo/values.yaml"), []byte("greeting: bye\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := d.loadChart(ChartSpec{Chart: "demo"})
	if err != nil || again.digest == fromDir.digest {
		t.Errorf("digest after an edit: %s (before %s), %v", again.digest, fromDir.digest, err)
	}

	for _, spec := range []ChartSpec{{ChartContent: "not base64!"}, {ChartContent: base64.StdEncoding.EncodeToString([]byte("not a tgz"))}, {Chart: "missing"}} {
		if _, err := d.loadChart(spec); err == nil {
			t.Errorf("%+v: no error", spec)
		}
	}
}

func TestConfigDigest(t *testing.T) {
	ch := loadedChart{digest: "abc"}
	a, _ := configDigest(ch, map[string]any{"x": 1, "y": map[string]any{"z": "w"}}, "ns")
	b, _ := configDigest(ch, map[string]any{"y": map[string]any{"z": "w"}, "x": 1}, "ns")
	c, _ := configDigest(ch, map[string]any{"x": 2, "y": map[string]any{"z": "w"}}, "ns")
	d, _ := configDigest(ch, map[string]any{"x": 1, "y": map[string]any{"z": "w"}}, "other")
	if a != b || a == c || a == d || len(a) != 32 {
		t.Errorf("digests %s %s %s %s", a, b, c, d)
	}
}

func TestEffectiveSpec(t *testing.T) {
	hc := &HelmChart{Spec: ChartSpec{FailurePolicy: FailurePolicyAbort, ServerSide: "true"}}
	if s := effectiveSpec(hc, nil); s.FailurePolicy != FailurePolicyAbort || s.Driver != "secret" {
		t.Errorf("without a config: %+v", s)
	}
	yes := true
	cfg := &HelmChartConfig{Spec: ConfigSpec{FailurePolicy: FailurePolicyRetry, ServerSide: "false", ForceConflicts: &yes}}
	if s := effectiveSpec(hc, cfg); s.FailurePolicy != FailurePolicyRetry || s.ServerSide != "false" || !s.ForceConflicts {
		t.Errorf("with a config: %+v", s)
	}
	if s := effectiveSpec(&HelmChart{}, nil); s.FailurePolicy != FailurePolicyReinstall {
		t.Errorf("default failure policy %q", s.FailurePolicy)
	}
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
