package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/pkg/datastore"
)

// TestDatastoreStaysBounded: under a steady loop creating and deleting
// ConfigMaps, with a short compaction interval, `skiff datastore status`
// shows compaction moving, state.db plus its WAL grows no faster than the
// rows compaction has yet to remove, and no event says compaction is
// behind.
func TestDatastoreStaysBounded(t *testing.T) {
	const interval, churn = 10 * time.Second, 100 * time.Second
	s := startServer(t, "--datastore-compact-interval", interval.String())
	rc := mustRESTConfig(t, s)
	rc.QPS, rc.Burst = -1, 0 // as fast as the server takes them
	c := kubernetes.NewForConfigOrDie(rc)
	ctx, cancel := context.WithTimeout(context.Background(), churn)
	defer cancel()

	var writes atomic.Int64
	var wg sync.WaitGroup
	payload := strings.Repeat("x", 4096)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("churn-%d-%d", w, i)
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"data": payload}}
				if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					continue
				}
				if c.CoreV1().ConfigMaps("default").Delete(ctx, name, metav1.DeleteOptions{}) == nil {
					writes.Add(2)
				}
			}
		})
	}
	var samples []datastore.Status
	start := time.Now()
	for tick := time.NewTicker(10 * time.Second); ctx.Err() == nil; {
		select {
		case <-ctx.Done():
		case <-tick.C:
			var st datastore.Status
			if err := json.Unmarshal([]byte(skiffCommand(t, s, true, "datastore", "status", "-o", "json")), &st); err != nil {
				t.Fatal(err)
			}
			samples = append(samples, st)
			t.Logf("%3.0fs: %d writes; state.db %.1f MiB + WAL %.1f MiB (%.1f MiB free inside); revision %d, compacted %d, %d rows",
				time.Since(start).Seconds(), writes.Load(), float64(st.SizeBytes)/(1<<20), float64(st.WALBytes)/(1<<20),
				float64(st.FreeBytes)/(1<<20), st.Revision, st.CompactRevision, st.Rows)
		}
	}
	wg.Wait()
	if len(samples) < 8 {
		t.Fatalf("%d samples", len(samples))
	}
	first, last := samples[0], samples[len(samples)-1]
	if last.Revision-first.Revision < 5000 {
		t.Fatalf("only %d revisions of churn: the check would prove nothing", last.Revision-first.Revision)
	}
	if last.CompactRevision <= first.CompactRevision || last.Revision-last.CompactRevision > 2*(last.Revision-first.Revision)/int64(len(samples))+5000 {
		t.Errorf("compaction did not keep up: compacted %d → %d while the revision went %d → %d", first.CompactRevision, last.CompactRevision, first.Revision, last.Revision)
	}
	if last.LastCompaction.IsZero() || time.Since(last.LastCompaction) > 3*interval {
		t.Errorf("status says the last compaction was at %v", last.LastCompaction)
	}
	// Bounded: freed pages are used again, so the second half of the run
	// needs no more bytes per row than the first half's largest size for
	// its most rows, with a quarter to spare. The rows themselves are
	// bounded by the compaction check above: how many there are between
	// two compactions follows the write rate, which rises as the server
	// warms up (a fixed size bound failed on that alone).
	var firstHalf, secondHalf, firstRows, secondRows int64
	for i, st := range samples {
		size := st.SizeBytes + st.WALBytes
		if i < len(samples)/2 {
			firstHalf, firstRows = max(firstHalf, size), max(firstRows, st.Rows)
		} else {
			secondHalf, secondRows = max(secondHalf, size), max(secondRows, st.Rows)
		}
	}
	if secondHalf*firstRows > firstHalf*secondRows*5/4 {
		t.Errorf("the datastore kept growing: at most %d bytes for %d rows in the first half of the churn, %d for %d in the second", firstHalf, firstRows, secondHalf, secondRows)
	}
	events, err := c.CoreV1().Events("kube-system").List(context.Background(), metav1.ListOptions{FieldSelector: "reason=DatastoreCompactionBehind"})
	if err != nil || len(events.Items) > 0 {
		t.Errorf("compaction-behind events: %v %v", events, err)
	}
	t.Logf("skiff datastore status:\n%s", skiffCommand(t, s, true, "datastore", "status"))
}
