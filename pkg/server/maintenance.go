package server

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/events"
	"github.com/skiff-dev/skiff/pkg/datastore"
)

// datastoreCheck is the check the server runs on the SQLite datastore once
// per compaction interval (see datastore.Maintainer): it records a Warning
// event in kube-system when compaction falls behind, and a Normal one when
// it has caught up again.
func (s *Server) datastoreCheck() func(context.Context) {
	m := &datastore.Maintainer{DBDir: s.cfg.DBDir()}
	host, _ := os.Hostname()
	wasBehind := false
	return func(ctx context.Context) {
		st, behind, err := m.Check(ctx)
		if err != nil {
			klog.InfoS("Checking the datastore; checking again later", "err", err)
			return
		}
		klog.V(2).InfoS("Datastore", "revision", st.Revision, "compacted", st.CompactRevision, "bytes", st.SizeBytes, "walBytes", st.WALBytes)
		switch {
		case behind && !wasBehind:
			msg := fmt.Sprintf("server %s: the datastore's compaction is behind: compacted revision %d, current %d; %s grows until it catches up. "+
				"Look for compaction errors in the server's log, and check the disk has space", host, st.CompactRevision, st.Revision, st.Path)
			klog.InfoS("Datastore compaction is behind", "compacted", st.CompactRevision, "revision", st.Revision)
			events.Record(ctx, s.admin, "skiff-datastore", events.SystemNamespace(), corev1.EventTypeWarning, "DatastoreCompactionBehind", msg)
		case !behind && wasBehind:
			events.Record(ctx, s.admin, "skiff-datastore", events.SystemNamespace(), corev1.EventTypeNormal, "DatastoreCompactionCaughtUp",
				fmt.Sprintf("server %s: compacted revision %d, current %d", host, st.CompactRevision, st.Revision))
		}
		wasBehind = behind
	}
}
