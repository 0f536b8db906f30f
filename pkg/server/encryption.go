package server

import (
	"context"
	"time"

	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/encryption"
)

// encryptSecrets rewrites every Secret once per key, so that those written
// before encryption (or under an earlier key) are stored with the current
// one, and records it in the encryption state ConfigMap.
func (s *Server) encryptSecrets(ctx context.Context) error {
	state, err := encryption.State(ctx, s.admin)
	if err != nil {
		return err
	}
	if state["key"] != s.encryptionKey {
		start := time.Now()
		n, err := encryption.RewriteSecrets(ctx, s.admin, func(done, total int) {
			klog.InfoS("Encrypting Secrets", "done", done, "of", total)
		})
		if err != nil {
			return err
		}
		if err := encryption.RecordState(ctx, s.admin, s.encryptionKey, n); err != nil {
			return err
		}
		klog.InfoS("Every Secret is encrypted", "key", s.encryptionKey, "secrets", n, "took", time.Since(start).Round(time.Millisecond))
	}
	<-ctx.Done()
	return nil
}
