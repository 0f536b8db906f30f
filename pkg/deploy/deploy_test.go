package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestDecode(t *testing.T) {
	objs, err := decode([]byte("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: b}\n"))
	if err != nil || len(objs) != 2 || objs[0].GetKind() != "ConfigMap" || objs[1].GetName() != "b" {
		t.Fatalf("%v %v", objs, err)
	}
	if objs, err := decode([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"}}`)); err != nil || len(objs) != 1 {
		t.Errorf("json: %v %v", objs, err)
	}
	for _, bad := range []string{"apiVersion: v1\nkind: [\n", "apiVersion: v1\nkind: ConfigMap\n", "kind: ConfigMap\nmetadata: {name: x}\n"} {
		if _, err := decode([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestManifestFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.yaml", "b.yml", "c.json", "d.yaml", "d.yaml.skip", "notes.txt", ".hidden.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := manifestFiles(dir)
	if err != nil || !slices.Equal(files, []string{"a.yaml", "b.yml", "c.json"}) {
		t.Errorf("%v %v", files, err)
	}
}

func TestWriteEmbedded(t *testing.T) {
	dir := t.TempDir()
	templates := fstest.MapFS{
		"dns.yaml":     {Data: []byte("ip: {{ .IP }}\n")},
		"storage.yaml": {Data: []byte("x: 1\n")},
	}
	if err := WriteEmbedded(dir, templates, map[string]string{"IP": "10.43.0.10"}, nil); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "dns.yaml")); string(data) != "ip: 10.43.0.10\n" {
		t.Errorf("rendered %q", data)
	}
	// Disabling an add-on removes its file, so the deployer prunes it.
	if err := WriteEmbedded(dir, templates, map[string]string{"IP": "x"}, []string{"storage"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "storage.yaml")); !os.IsNotExist(err) {
		t.Errorf("disabled add-on's file remains: %v", err)
	}
	if err := WriteEmbedded(dir, templates, map[string]string{}, nil); err == nil || !strings.Contains(err.Error(), "dns.yaml") {
		t.Errorf("missing value: %v", err)
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"coredns.yaml":                 "coredns.yaml",
		"my app (v2).yaml":             "my_app__v2_.yaml",
		".x.json":                      "x.json",
		strings.Repeat("a", 70) + ".y": strings.Repeat("a", 63),
	} {
		if got := labelValue(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
