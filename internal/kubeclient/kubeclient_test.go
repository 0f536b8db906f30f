package kubeclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigNamesTheClientAndTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.kubeconfig")
	kubeconfig := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := Config(path, "skiff-test")
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://127.0.0.1:6443" || rc.UserAgent != "skiff-test" || rc.BearerToken != "t" {
		t.Errorf("config %+v", rc)
	}
	if _, err := New(filepath.Join(t.TempDir(), "missing"), "x"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing kubeconfig: %v, want an error naming the file", err)
	}
}
