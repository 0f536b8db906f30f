package harness

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Writer creates ConfigMaps in the default namespace one after another,
// 50 ms apart, keeping the names the API acknowledged and the longest
// time between two acknowledgements: the API's unavailability while a
// server is killed.
type Writer struct {
	cancel context.CancelFunc
	done   chan struct{}
	acked  []string
	failed int
	gap    time.Duration
}

// StartWriter starts writing ConfigMaps named prefix-<n> through client,
// which must not be rate-limited below 20 requests a second.
func StartWriter(client kubernetes.Interface, prefix string) *Writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Writer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := time.Now()
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("%s-%05d", prefix, i)
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}
			_, err := client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
			switch {
			case err == nil:
				w.acked = append(w.acked, name)
				w.gap = max(w.gap, time.Since(last))
				last = time.Now()
			case ctx.Err() == nil: // not a write Stop interrupted
				w.failed++
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
		// Writes that had not come back by the end are a gap too.
		w.gap = max(w.gap, time.Since(last))
	}()
	return w
}

// Stop ends the writes and returns the names acknowledged, how many
// writes failed, and the longest gap between acknowledgements.
func (w *Writer) Stop() (acked []string, failed int, gap time.Duration) {
	w.cancel()
	<-w.done
	return w.acked, w.failed, w.gap
}
