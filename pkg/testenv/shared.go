package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Namespace gives t a namespace of its own, made for it and deleted when it
// ends, in one environment that every test of the binary asking for the
// same options shares; the environment starts with the first of them.
// Only the first test pays the start: the others get their namespace in
// milliseconds.
//
// A namespace isolates namespaced objects only: cluster-scoped ones (CRDs,
// nodes, ClusterRoles, namespaces themselves) and the controllers are
// shared, and env.Config is the cluster's admin. Use it for tests whose
// objects live in one namespace; use Start (with Pooled for speed) for
// tests that change cluster-scoped state or restart the server.
func Namespace(t testing.TB, opts ...Option) (env *Environment, namespace string) {
	t.Helper()
	env, client, err := shared.get(opts)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: namespacePrefix(t.Name()),
		Labels:       map[string]string{"testenv.skiff.dev/test": "true"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("testenv: creating the test's namespace: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: namespace %s kept until the shared environment stops", ns.Name)
			return
		}
		// The namespace controller removes what is in it, in the
		// background: the next test does not wait for it.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("testenv: deleting namespace %s: %v", ns.Name, err)
		}
	})
	return env, ns.Name
}

// namespacePrefix makes a test's name into the start of a namespace name:
// lower case letters, digits and dashes, short enough for generateName.
func namespacePrefix(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return strings.TrimSuffix(b.String(), "-") + "-"
}

// shared holds the environments Namespace hands out, one per set of
// options; they run until StopShared or the end of the test binary.
var shared = &sharedEnvs{envs: map[string]*sharedEnv{}}

type sharedEnvs struct {
	mu   sync.Mutex
	envs map[string]*sharedEnv
}

// sharedEnv is one shared environment and the client Namespace makes
// namespaces with (one connection for all tests).
type sharedEnv struct {
	once   sync.Once
	env    *Environment
	client kubernetes.Interface
	err    error
}

func (s *sharedEnvs) get(opts []Option) (*Environment, kubernetes.Interface, error) {
	set := &settings{}
	for _, o := range opts {
		o(set)
	}
	bin, err := findBinary(set.binary)
	if err != nil {
		return nil, nil, err
	}
	key := fmt.Sprintf("%s %q %d", set.key(bin), set.crdDirs, len(set.crds))
	s.mu.Lock()
	e := s.envs[key]
	if e == nil {
		e = &sharedEnv{}
		s.envs[key] = e
	}
	s.mu.Unlock()
	e.once.Do(func() {
		if e.env, e.err = New(opts...); e.err == nil {
			e.client, e.err = kubernetes.NewForConfig(e.env.Config)
		}
	})
	return e.env, e.client, e.err
}

func (s *sharedEnvs) stop() error {
	s.mu.Lock()
	envs := s.envs
	s.envs = map[string]*sharedEnv{}
	s.mu.Unlock()
	var errs []error
	for _, e := range envs {
		if e.env != nil {
			errs = append(errs, e.env.Stop())
		}
	}
	return errors.Join(errs...)
}

// StopShared stops the environments Namespace shares and the spares Pooled
// keeps, and removes their directories. Call it at the end of TestMain;
// without it they die with the test binary, and the next test binary that
// uses testenv removes their directories.
func StopShared() error {
	return errors.Join(shared.stop(), pool.stop())
}
