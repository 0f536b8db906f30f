package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

const ns = "e2e"

var widgets = schema.GroupVersionResource{Group: "e2e.skiff.dev", Version: "v1", Resource: "widgets"}

// TestControlPlane is the control-plane acceptance suite, once on the
// default SQLite datastore and once on kine's memory backend.
func TestControlPlane(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		persistent bool
	}{
		{"sqlite", nil, true},
		{"memory", []string{"--datastore-endpoint", "memory://"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.args...)
			ctx := context.Background()
			rc, err := s.RESTConfig()
			if err != nil {
				t.Fatal(err)
			}
			c := kubernetes.NewForConfigOrDie(rc)

			created := createObjects(t, ctx, rc, c)
			t.Run("deployment gets replicaset and pods", func(t *testing.T) { checkDeployment(t, ctx, c) })
			t.Run("watch delivers events", func(t *testing.T) { checkWatch(t, ctx, c) })
			t.Run("unauthenticated gets 401", func(t *testing.T) { checkUnauthenticated(t, ctx, rc) })
			t.Run("serviceaccount without rights gets 403", func(t *testing.T) { checkForbidden(t, ctx, rc, c) })
			t.Run("secure file modes", func(t *testing.T) { checkModes(t, s) })
			t.Run("components log their arguments", func(t *testing.T) { checkArgLogs(t, s) })
			t.Run("kubectl", func(t *testing.T) { checkKubectl(t, s) })
			if tc.persistent {
				t.Run("second server on the same data dir is refused", func(t *testing.T) { checkDataDirLock(t, s) })
			}

			tlsBefore := readDir(t, filepath.Join(s.DataDir, "server", "tls"))
			mustStop(t, s)
			mustStart(t, s)
			if !equalFiles(tlsBefore, readDir(t, filepath.Join(s.DataDir, "server", "tls"))) {
				t.Error("certificates or CAs changed across a restart")
			}
			c = kubernetes.NewForConfigOrDie(rc)
			if tc.persistent {
				checkObjectsKept(t, ctx, rc, c, created)
			}
			t.Run("deleting a namespace removes its contents", func(t *testing.T) { checkNamespaceDeletion(t, ctx, rc, c, tc.persistent) })
		})
	}
}

// identity is what must survive a restart unchanged.
type identity struct{ uid, resourceVersion string }

func idOf(m metav1.Object) identity { return identity{string(m.GetUID()), m.GetResourceVersion()} }

func createObjects(t *testing.T, ctx context.Context, rc *rest.Config, c kubernetes.Interface) map[string]identity {
	t.Helper()
	ids := map[string]identity{}
	n, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids["namespace"] = idOf(n)
	cm, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids["configmap"] = idOf(cm)
	sec, err := c.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "password"}, StringData: map[string]string{"p": "hunter2"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids["secret"] = idOf(sec)

	ext := apiextensionsclient.NewForConfigOrDie(rc)
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.e2e.skiff.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "e2e.skiff.dev",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"size": {Type: "integer"}}},
					},
				}},
			}},
		},
	}
	if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CRD not established: %v", err)
	}
	got, _ := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
	ids["crd uid"] = identity{uid: string(got.UID)}

	dyn := dynamic.NewForConfigOrDie(rc)
	widget := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "e2e.skiff.dev/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "blue"},
		"spec":     map[string]any{"size": int64(3)},
	}}
	// Discovery of a just-established CRD can lag by a moment.
	var cr *unstructured.Unstructured
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cr, err = dyn.Resource(widgets).Namespace(ns).Create(ctx, widget, metav1.CreateOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("creating custom resource: %v", err)
	}
	ids["widget"] = idOf(cr)
	return ids
}

func checkDeployment(t *testing.T, ctx context.Context, c kubernetes.Interface) {
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "busybox"}}},
			},
		},
	}
	d, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		rss, err := c.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(rss.Items) != 1 || !metav1.IsControlledBy(&rss.Items[0], d) {
			return false, err
		}
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		owned := 0
		for i := range pods.Items {
			if metav1.IsControlledBy(&pods.Items[i], &rss.Items[0]) {
				owned++
			}
		}
		return owned == 2, nil
	})
	if err != nil {
		t.Fatalf("deployment did not get a replicaset with 2 pods: %v", err)
	}
}

func checkWatch(t *testing.T, ctx context.Context, c kubernetes.Interface) {
	list, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion, FieldSelector: "metadata.name=watched"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	cm, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "watched"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"changed": "yes"}
	if _, err := c.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().ConfigMaps(ns).Delete(ctx, "watched", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []watch.EventType{watch.Added, watch.Modified, watch.Deleted} {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed before %s", want)
			}
			if ev.Type != want {
				t.Fatalf("watch event %s, want %s", ev.Type, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no %s event within 15s", want)
		}
	}
}

func checkUnauthenticated(t *testing.T, ctx context.Context, rc *rest.Config) {
	anon := rest.AnonymousClientConfig(rc)
	_, err := kubernetes.NewForConfigOrDie(anon).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Fatalf("anonymous list: got %v, want 401 Unauthorized", err)
	}
}

func checkForbidden(t *testing.T, ctx context.Context, rc *rest.Config, c kubernetes.Interface) {
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := c.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa := rest.AnonymousClientConfig(rc)
	sa.BearerToken = tr.Status.Token
	saClient := kubernetes.NewForConfigOrDie(sa)
	_, err = saClient.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("service account listing secrets: got %v, want 403 Forbidden", err)
	}
	// The token itself is valid: the same client may ask who it is.
	review, err := saClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review with the token: %v", err)
	}
	if want := "system:serviceaccount:" + ns + ":nobody"; review.Status.UserInfo.Username != want {
		t.Fatalf("token authenticates as %q, want %q", review.Status.UserInfo.Username, want)
	}
}

func checkModes(t *testing.T, s *harness.Server) {
	paths := []string{s.Kubeconfig()}
	keys, _ := filepath.Glob(filepath.Join(s.DataDir, "server", "tls", "*.key"))
	kubeconfigs, _ := filepath.Glob(filepath.Join(s.DataDir, "server", "cred", "*.kubeconfig"))
	if len(keys) < 8 || len(kubeconfigs) != 3 {
		t.Fatalf("found %d keys and %d component kubeconfigs", len(keys), len(kubeconfigs))
	}
	for _, p := range append(append(paths, keys...), kubeconfigs...) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %o, want 0600", p, fi.Mode().Perm())
		}
	}
}

func checkArgLogs(t *testing.T, s *harness.Server) {
	log, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"Running kube-apiserver" args="--advertise-address=`,
		"--anonymous-auth=false",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--profiling=false",
		"--service-cluster-ip-range=10.43.0.0/16",
		`"Running kube-controller-manager" args="`,
		"--cluster-cidr=10.42.0.0/16",
		`"Running kube-scheduler" args="`,
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("server log lacks %q", want)
		}
	}
}

func checkKubectl(t *testing.T, s *harness.Server) {
	run := func(bin string, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(s.Bin, []string{"KUBECONFIG=" + s.Kubeconfig()}, "kubectl", "get", "namespace", ns, "-o", "name"); got != "namespace/"+ns {
		t.Errorf("skiff kubectl get namespace: %q", got)
	}
	link := filepath.Join(t.TempDir(), "kubectl")
	if err := os.Symlink(s.Bin, link); err != nil {
		t.Fatal(err)
	}
	if got := run(link, nil, "--kubeconfig", s.Kubeconfig(), "get", "configmap", "settings", "-n", ns, "-o", "jsonpath={.data.k}"); got != "v" {
		t.Errorf("kubectl symlink get configmap: %q", got)
	}
	version := run(s.Bin, nil, "--version")
	if !strings.Contains(version, "skiff version") || !strings.Contains(version, "kubernetes v1.37.") {
		t.Errorf("skiff --version printed %q", version)
	}
	server := run(s.Bin, []string{"KUBECONFIG=" + s.Kubeconfig()}, "kubectl", "version", "-o", "json")
	if !strings.Contains(server, `"gitVersion": "v1.37.`) || strings.Contains(server, "v0.0.0") {
		t.Errorf("kubectl version does not report the stamped Kubernetes version:\n%s", server)
	}
}

func checkDataDirLock(t *testing.T, running *harness.Server) {
	second := newServer(t, running.DataDir)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(time.Minute)
	for {
		if exited, err := second.Exited(); exited {
			if err == nil {
				t.Fatal("second server on the same data dir exited 0")
			}
			break
		}
		select {
		case <-deadline:
			t.Fatal("second server on the same data dir is still running")
		case <-time.After(50 * time.Millisecond):
		}
	}
	log, _ := os.ReadFile(second.LogPath)
	if !strings.Contains(string(log), "in use by another skiff server") {
		t.Fatalf("second server's output does not say the data dir is in use:\n%s", log)
	}
}

func checkObjectsKept(t *testing.T, ctx context.Context, rc *rest.Config, c kubernetes.Interface, want map[string]identity) {
	t.Helper()
	got := map[string]identity{}
	n, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got["namespace"] = idOf(n)
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got["configmap"] = idOf(cm)
	sec, err := c.CoreV1().Secrets(ns).Get(ctx, "password", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got["secret"] = idOf(sec)
	crd, err := apiextensionsclient.NewForConfigOrDie(rc).ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "widgets.e2e.skiff.dev", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got["crd uid"] = identity{uid: string(crd.UID)}
	var cr *unstructured.Unstructured
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cr, err = dynamic.NewForConfigOrDie(rc).Resource(widgets).Namespace(ns).Get(ctx, "blue", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("custom resource after restart: %v", err)
	}
	got["widget"] = idOf(cr)
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s after restart: uid/resourceVersion %v, want %v", k, got[k], w)
		}
	}
}

func checkNamespaceDeletion(t *testing.T, ctx context.Context, rc *rest.Config, c kubernetes.Interface, persistent bool) {
	if !persistent {
		// memory:// starts empty after a restart: make something to delete.
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("namespace %s still exists: %v", ns, err)
	}
	cms, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(cms.Items) != 0 {
		t.Errorf("configmaps left in deleted namespace: %d (%v)", len(cms.Items), err)
	}
	if persistent {
		crs, err := dynamic.NewForConfigOrDie(rc).Resource(widgets).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(crs.Items) != 0 {
			t.Errorf("custom resources left in deleted namespace: %v", err)
		}
	}
}

// readDir reads every regular file in dir, by name.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if e.Type().IsRegular() {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = data
		}
	}
	return files
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
