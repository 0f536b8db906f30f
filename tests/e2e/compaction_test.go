package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// TestCompactionExpiresContinueTokens: once more than kine's 1000 retained
// revisions have been written after a paginated list began, compaction
// must expire its continue token with 410 Gone, as etcd does; clients such
// as informers rely on that to relist.
func TestCompactionExpiresContinueTokens(t *testing.T) {
	// Both compactors on a short period: kine's removes old revisions, the
	// apiserver's learns how far that went and drops its watch-cache
	// snapshots that could still answer the old token.
	s := startServer(t, "--datastore-compact-interval", "2s", "--kube-apiserver-arg", "etcd-compaction-interval=2s")
	rc := mustRESTConfig(t, s)
	rc.QPS, rc.Burst = 1000, 1000
	c := kubernetes.NewForConfigOrDie(rc)
	ctx := context.Background()
	for i := range 20 {
		if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("page-%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{Limit: 5})
	if err != nil || page.Continue == "" {
		t.Fatalf("first page: continue %q, %v", page.Continue, err)
	}
	// A fresh token still works.
	if _, err := c.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{Limit: 5, Continue: page.Continue}); err != nil {
		t.Fatalf("second page right away: %v", err)
	}
	churn, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "churn"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1100 {
		churn.Data = map[string]string{"i": fmt.Sprint(i)}
		if churn, err = c.CoreV1().ConfigMaps("default").Update(ctx, churn, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{Limit: 5, Continue: page.Continue})
		if ctx.Err() == nil {
			last = err
		}
		return apierrors.IsResourceExpired(err) || apierrors.IsGone(err), nil
	})
	if err != nil {
		t.Fatalf("continue token older than 1100 writes still answers (%v); compaction is not happening", last)
	}
	t.Logf("stale continue token: %v", last)
}
