package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// Prefixes of snapshot names: the schedule's, which retention prunes, and
// those taken on demand (k3s's names).
const (
	ScheduledSnapshotPrefix = "scheduled"
	OnDemandSnapshotPrefix  = "on-demand"
)

// SaveSnapshot saves a snapshot of cfg's datastore named prefix-<time>
// into cfg.Snapshots(): SQLite through its online backup API, embedded
// etcd through its snapshot API (the member must run). It returns the
// file.
func SaveSnapshot(ctx context.Context, cfg *config.Server, prefix string) (string, error) {
	dir := cfg.Snapshots()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("snapshot dir %s: %w; choose another with --snapshot-dir", dir, err)
	}
	now := time.Now()
	switch {
	case datastore.HasData(cfg.EtcdDataDir()):
		out := filepath.Join(dir, datastore.SnapshotName(prefix, now, datastore.EtcdSnapshotExt))
		client, err := localEtcdClient(cfg)
		if err != nil {
			return "", err
		}
		defer client.Close()
		return out, datastore.SaveEtcd(ctx, client, out)
	case cfg.Datastore.Endpoint == "":
		out := filepath.Join(dir, datastore.SnapshotName(prefix, now, datastore.SQLiteSnapshotExt))
		return out, datastore.SaveSQLite(ctx, filepath.Join(cfg.DBDir(), "state.db"), out)
	}
	return "", fmt.Errorf("the datastore is %s: back it up with its own tools", datastore.Redact(cfg.Datastore.Endpoint))
}

// checkSnapshotDir fails, before anything starts, when scheduled
// snapshots could not be written to a --snapshot-dir (the default is in
// the data dir, which Init checks).
func checkSnapshotDir(cfg *config.Server) error {
	if cfg.SnapshotSchedule == "" || cfg.Datastore.Endpoint != "" || cfg.SnapshotDir == "" {
		return nil
	}
	dir := cfg.Snapshots()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot dir %s is not usable: %w; choose another with --snapshot-dir", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err == nil {
		probe.Close()
		os.Remove(probe.Name())
	}
	if err != nil {
		return fmt.Errorf("snapshot dir %s is not writable: %w; choose another with --snapshot-dir", dir, err)
	}
	return nil
}

// runSnapshots saves a snapshot on the schedule and keeps the newest
// SnapshotRetention scheduled ones. Every server snapshots its own copy.
func (s *Server) runSnapshots(ctx context.Context) error {
	c := cron.New()
	if _, err := c.AddFunc(s.cfg.SnapshotSchedule, func() {
		start := time.Now()
		out, err := SaveSnapshot(ctx, s.cfg, ScheduledSnapshotPrefix)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				klog.ErrorS(err, "Scheduled snapshot failed")
			}
			return
		}
		klog.InfoS("Saved a scheduled snapshot", "file", out, "took", time.Since(start).Round(time.Millisecond))
		deleted, err := datastore.PruneSnapshots(s.cfg.Snapshots(), ScheduledSnapshotPrefix, s.cfg.SnapshotRetention)
		if err != nil {
			klog.ErrorS(err, "Pruning scheduled snapshots")
		}
		for _, d := range deleted {
			klog.InfoS("Pruned a scheduled snapshot", "file", d, "retention", s.cfg.SnapshotRetention)
		}
	}); err != nil {
		return fmt.Errorf("--snapshot-schedule-cron: %w", err)
	}
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done() // a snapshot being written ends (its context is done)
	return nil
}

// DatastoreStatus reads the status of cfg's datastore: SQLite's file
// (while the server runs or not), or the embedded etcd member (running).
func DatastoreStatus(ctx context.Context, cfg *config.Server) (*datastore.Status, error) {
	switch {
	case datastore.HasData(cfg.EtcdDataDir()):
		client, err := localEtcdClient(cfg)
		if err != nil {
			return nil, err
		}
		defer client.Close()
		return datastore.EtcdStatus(ctx, client)
	case cfg.Datastore.Endpoint == "":
		return datastore.SQLiteStatus(ctx, cfg.DBDir())
	}
	return nil, fmt.Errorf("the datastore is %s: ask it with its own tools", datastore.Redact(cfg.Datastore.Endpoint))
}

// localEtcdClient reaches this server's embedded etcd member.
func localEtcdClient(cfg *config.Server) (*clientv3.Client, error) {
	endpoint := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.EtcdClientPort))
	return datastore.EtcdClient([]string{endpoint}, pki.Dir(cfg.TLSDir()).EtcdDir())
}
