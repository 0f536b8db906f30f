package testenv_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/pkg/testenv"
)

// ownDirs are the environment directories of this test process.
func ownDirs(t *testing.T) []string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "skiff-testenv-*"))
	var own []string
	for _, dir := range dirs {
		if data, err := os.ReadFile(filepath.Join(dir, "owner")); err == nil && string(data) == strconv.Itoa(os.Getpid()) {
			own = append(own, dir)
		}
	}
	return own
}

// TestPooled: the second pooled environment was started before it was
// asked for, is a server of its own, and StopShared stops the spare that
// replaced it.
func TestPooled(t *testing.T) {
	first := testenv.Start(t, testenv.Pooled())
	// The spare starts once the first environment is handed out; a test's
	// own work lasts until it has written its kubeconfig (how long that
	// takes depends on the load of the machine, not on the pool).
	spareWritten := func() bool {
		for _, dir := range ownDirs(t) {
			if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); dir != first.Dir && err == nil {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(time.Minute)
	for !spareWritten() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	asked := time.Now()
	second := testenv.Start(t, testenv.Pooled())
	if second.Pid() == first.Pid() || second.Dir == first.Dir {
		t.Fatalf("the second environment is the first one (pid %d, %s)", first.Pid(), first.Dir)
	}
	info, err := os.Stat(second.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if !info.ModTime().Before(asked) {
		t.Errorf("the second environment's kubeconfig was written at %s, after it was asked for at %s: not a pre-started spare", info.ModTime(), asked)
	}
	c := kubernetes.NewForConfigOrDie(second.Config)
	if _, err := c.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("using the pooled environment: %v", err)
	}
	// first, second and the next spare.
	if dirs := ownDirs(t); len(dirs) != 3 {
		t.Errorf("%d environment directories of this test, want 3: %v", len(dirs), dirs)
	}
	if err := testenv.StopShared(); err != nil {
		t.Fatal(err)
	}
	for _, env := range []*testenv.Environment{first, second} {
		if err := env.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if dirs := ownDirs(t); len(dirs) != 0 {
		t.Errorf("left behind after StopShared and Stop: %v", dirs)
	}
}

// TestNamespace: tests that share an environment get namespaces of their
// own, in the same server, removed after them.
func TestNamespace(t *testing.T) {
	t.Cleanup(func() {
		if err := testenv.StopShared(); err != nil {
			t.Error(err)
		}
	})
	var envs []*testenv.Environment
	var namespaces []string
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) {
			env, ns := testenv.Namespace(t)
			envs, namespaces = append(envs, env), append(namespaces, ns)
			c := kubernetes.NewForConfigOrDie(env.Config)
			ctx := context.Background()
			if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mine"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			list, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=mine"})
			if err != nil || len(list.Items) != 1 {
				t.Fatalf("the namespace holds %v (%v), want its own ConfigMap only", list, err)
			}
		})
	}
	if len(envs) != 2 || envs[0] != envs[1] {
		t.Fatalf("the subtests ran in different environments")
	}
	if namespaces[0] == namespaces[1] {
		t.Fatalf("both subtests got namespace %s", namespaces[0])
	}
	c := kubernetes.NewForConfigOrDie(envs[0].Config)
	for _, ns := range namespaces {
		got, err := c.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
		if err == nil && got.DeletionTimestamp == nil {
			t.Errorf("namespace %s outlived its test", ns)
		} else if err != nil && !apierrors.IsNotFound(err) {
			t.Error(err)
		}
	}
}
