package testenv_test

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/skiff-dev/skiff/pkg/testenv"
)

var widgetKind = schema.GroupVersionKind{Group: "example.skiff.dev", Version: "v1", Kind: "Widget"}

// widgetReconciler reports each Widget's spec.size back in its status, the
// smallest thing an operator does.
type widgetReconciler struct{ client client.Client }

func (r *widgetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	w := &unstructured.Unstructured{}
	w.SetGroupVersionKind(widgetKind)
	if err := r.client.Get(ctx, req.NamespacedName, w); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	size, _, _ := unstructured.NestedInt64(w.Object, "spec", "size")
	if err := unstructured.SetNestedField(w.Object, map[string]any{"observedSize": size, "phase": "Ready"}, "status"); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.client.Status().Update(ctx, w)
}

// TestControllerRuntimeReconciler starts an environment with a CRD, runs a
// controller-runtime manager against it and sees the reconciler update the
// custom resource's status.
func TestControllerRuntimeReconciler(t *testing.T) {
	env := testenv.Start(t, testenv.WithCRDDirectory("testdata/crds"), testenv.WithKubernetesVersion("v1.37"))

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	watched := &unstructured.Unstructured{}
	watched.SetGroupVersionKind(widgetKind)
	if err := ctrl.NewControllerManagedBy(mgr).For(watched).Complete(&widgetReconciler{client: mgr.GetClient()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "blue", "namespace": "default"}, "spec": map[string]any{"size": int64(7)}}}
	w.SetGroupVersionKind(widgetKind)
	if err := c.Create(ctx, w); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(widgetKind)
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "blue"}, got); err != nil {
			return false, err
		}
		observed, _, _ := unstructured.NestedInt64(got.Object, "status", "observedSize")
		phase, _, _ := unstructured.NestedString(got.Object, "status", "phase")
		return observed == 7 && phase == "Ready", nil
	})
	if err != nil {
		t.Fatalf("reconciler did not update the widget's status: %v", err)
	}
}
