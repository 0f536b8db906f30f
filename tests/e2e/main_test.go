// Package e2e runs the real skiff binary and checks it with client-go and
// kubectl. `make test` builds the binary and sets SKIFF_BIN.
package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-dev/skiff/tests/harness"
)

// startServer starts a server on a new data dir in t's temp dir and stops it
// when the test ends; on failure the server's log is printed.
func startServer(t *testing.T, args ...string) *harness.Server {
	t.Helper()
	s := newServer(t, t.TempDir()+"/data", args...)
	mustStart(t, s)
	return s
}

func newServer(t *testing.T, dataDir string, args ...string) *harness.Server {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	s, err := harness.NewServer(bin, dataDir, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			if log, err := os.ReadFile(s.LogPath); err == nil {
				t.Logf("server log %s:\n%s", s.LogPath, tail(string(log), 200))
			}
		}
	})
	return s
}

func mustStart(t *testing.T, s *harness.Server) {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitKubeconfig(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
}

func mustStop(t *testing.T, s *harness.Server) {
	t.Helper()
	took, err := s.Stop(30 * time.Second)
	if err != nil {
		t.Fatalf("stopping the server: %v", err)
	}
	if took > 10*time.Second {
		t.Errorf("SIGTERM took %s to stop the server; want a few seconds", took)
	}
	t.Logf("server stopped %s after SIGTERM", took.Round(time.Millisecond))
}

func tail(s string, lines int) string {
	n := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			n++
			if n > lines {
				return s[i+1:]
			}
		}
	}
	return s
}

func mustRESTConfig(t *testing.T, s *harness.Server) *rest.Config {
	t.Helper()
	rc, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// checkObjectSurvivesRestart creates a ConfigMap, restarts the server and
// expects the same object, with the same UID and resourceVersion.
func checkObjectSurvivesRestart(t *testing.T, s *harness.Server) {
	t.Helper()
	ctx := context.Background()
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	cm, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "durable"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustStop(t, s)
	mustStart(t, s)
	c = kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	got, err := c.CoreV1().ConfigMaps("default").Get(ctx, "durable", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got.UID != cm.UID || got.ResourceVersion != cm.ResourceVersion {
		t.Errorf("configmap changed across a restart: %s/%s, was %s/%s", got.UID, got.ResourceVersion, cm.UID, cm.ResourceVersion)
	}
}
