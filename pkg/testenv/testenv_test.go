package testenv_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/pkg/testenv"
)

func poll(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestControllersRun checks what envtest lacks: namespace deletion, the
// garbage collector, and a Deployment whose pods run on simulated nodes.
func TestControllersRun(t *testing.T) {
	env := testenv.Start(t, testenv.WithSimulatedNodes(2))
	c := kubernetes.NewForConfigOrDie(env.Config)
	ctx := context.Background()

	t.Run("namespace deletion", func(t *testing.T) {
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CoreV1().ConfigMaps("doomed").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := c.CoreV1().Namespaces().Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, "namespace removed completely", time.Minute, func(ctx context.Context) (bool, error) {
			_, err := c.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	})

	t.Run("garbage collector", func(t *testing.T) {
		owner, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ref := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}
		if _, err := c.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "dependent", OwnerReferences: []metav1.OwnerReference{ref}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := c.CoreV1().ConfigMaps("default").Delete(ctx, "owner", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, "dependent collected", time.Minute, func(ctx context.Context) (bool, error) {
			_, err := c.CoreV1().Secrets("default").Get(ctx, "dependent", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	})

	t.Run("deployment on simulated nodes", func(t *testing.T) {
		labels := map[string]string{"app": "web"}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](3),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
				},
			},
		}
		if _, err := c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		poll(t, "3 pods Running and the deployment available", 2*time.Minute, func(ctx context.Context) (bool, error) {
			pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, err
			}
			running := 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && strings.HasPrefix(p.Spec.NodeName, "skiff-sim-") {
					running++
				}
			}
			got, err := c.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
			return running == 3 && err == nil && got.Status.AvailableReplicas == 3, err
		})
	})
}

// TestParallelEnvironments starts ten environments at once; each works, and
// once stopped none leaves a process, a port or a file behind.
func TestParallelEnvironments(t *testing.T) {
	const n = 10
	var mu sync.Mutex
	type leftover struct {
		pid  int
		dir  string
		host string
	}
	var stopped []leftover
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				env := testenv.Start(t, testenv.WithStartTimeout(3*time.Minute))
				c := kubernetes.NewForConfigOrDie(env.Config)
				name := fmt.Sprintf("env-%d", i)
				if _, err := c.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				// Isolated: the namespace exists here and in no other environment.
				list, err := c.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
				if err != nil {
					t.Fatal(err)
				}
				for _, ns := range list.Items {
					if strings.HasPrefix(ns.Name, "env-") && ns.Name != name {
						t.Errorf("environment %d sees namespace %s of another", i, ns.Name)
					}
				}
				u, _ := url.Parse(env.Config.Host)
				mu.Lock()
				stopped = append(stopped, leftover{env.Pid(), env.Dir, u.Host})
				mu.Unlock()
			})
		}
	})
	if len(stopped) != n {
		t.Fatalf("%d of %d environments ran", len(stopped), n)
	}
	for _, l := range stopped {
		if err := syscall.Kill(l.pid, 0); err == nil {
			t.Errorf("server process %d still running", l.pid)
		}
		if _, err := os.Stat(l.dir); !os.IsNotExist(err) {
			t.Errorf("environment directory %s left behind", l.dir)
		}
		if conn, err := net.DialTimeout("tcp", l.host, time.Second); err == nil {
			conn.Close()
			t.Errorf("something still listens on %s", l.host)
		}
	}
}

func TestOptions(t *testing.T) {
	t.Run("version mismatch fails Start", func(t *testing.T) {
		_, err := testenv.New(testenv.WithKubernetesVersion("v1.99"))
		if err == nil || !strings.Contains(err.Error(), "the test wants v1.99") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad apiserver flag fails Start with the server's reason", func(t *testing.T) {
		_, err := testenv.New(testenv.WithAPIServerArgs("no-such-flag=1"))
		if err == nil || !strings.Contains(err.Error(), "unknown flag: --no-such-flag") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("controllers, feature gates and sqlite", func(t *testing.T) {
		env := testenv.Start(t, testenv.WithSQLite(), testenv.WithControllers("*", "-garbage-collector-controller"),
			testenv.WithFeatureGates(map[string]bool{"ComponentFlagz": true}))
		// The controller-manager starts after the apiserver is ready, so its
		// arguments reach the log a moment after Start returns.
		for _, want := range []string{"--controllers=*,-garbage-collector-controller", "--feature-gates=ComponentFlagz=true"} {
			poll(t, fmt.Sprintf("server log showing %q", want), 30*time.Second, func(context.Context) (bool, error) {
				return strings.Contains(env.Logs(), want), nil
			})
		}
		if _, err := os.Stat(env.Dir + "/data/server/db/state.db"); err != nil {
			t.Errorf("WithSQLite: %v", err)
		}
	})
}
