package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/supervisor"
)

// datastoreKind is what this server tells a server that asks to join it.
func (s *Server) datastoreKind() string {
	switch {
	case s.cfg.EmbeddedEtcd():
		return supervisor.DatastoreEtcd
	case datastore.Shared(s.cfg.Datastore.Endpoint):
		return supervisor.DatastoreExternal
	}
	return supervisor.DatastoreSQLite
}

// checkEtcdState refuses a data dir whose datastore is embedded etcd when
// the server is started without it: the data would seem lost, and there
// is no way back from etcd to SQLite.
func checkEtcdState(cfg *config.Server) error {
	if !cfg.EmbeddedEtcd() && datastore.HasData(cfg.EtcdDataDir()) {
		return fmt.Errorf("%s holds this server's embedded etcd data: start it with --cluster-init (or --server) as before; a datastore moved to etcd does not go back to SQLite or another endpoint", cfg.EtcdDataDir())
	}
	return nil
}

// etcdMember describes this server's etcd member; its name, made once
// from the node's name and a random suffix, is kept in the data dir.
func (s *Server) etcdMember() (*datastore.Etcd, error) {
	path := filepath.Join(s.cfg.ServerDir(), "etcd-name")
	name := ""
	if data, err := os.ReadFile(path); err == nil {
		name = strings.TrimSpace(string(data))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading the etcd member name: %w", err)
	}
	if name == "" {
		base := s.cfg.Node.Name
		if base == "" {
			base, _ = os.Hostname()
		}
		suffix := make([]byte, 4)
		rand.Read(suffix)
		name = strings.ToLower(base) + "-" + hex.EncodeToString(suffix)
		if err := pki.WriteFileIfChanged(path, []byte(name+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing the etcd member name: %w", err)
		}
	}
	return &datastore.Etcd{
		Name: name, DataDir: s.cfg.EtcdDataDir(), IP: s.advertise, TLS: s.tls.EtcdDir(),
		ClientPort: s.cfg.EtcdClientPort, PeerPort: s.cfg.EtcdPeerPort, MetricsPort: s.cfg.EtcdMetricsPort,
	}, nil
}

// startEtcd starts this server's member: a new cluster, a restart, or a
// learner that joined through the join API (promoted here once it has
// caught up). A first start with --cluster-init moves a SQLite datastore
// into it.
func (s *Server) startEtcd(ctx context.Context) (*datastore.Backend, error) {
	if err := s.restoreEtcd(); err != nil {
		return nil, err
	}
	fresh := !datastore.HasData(s.etcd.DataDir)
	if !fresh {
		s.etcd.InitialCluster = "" // the data dir knows its cluster
	}
	db, err := datastore.StartEtcd(ctx, s.etcd)
	if err != nil {
		return nil, fmt.Errorf("%w; check that ports %d and %d are free and, for a member of several, that the other servers run", err, s.etcd.ClientPort, s.etcd.PeerPort)
	}
	if fresh && s.etcd.InitialCluster != "" {
		client, err := datastore.EtcdClient(s.etcdPeers, s.tls.EtcdDir())
		if err != nil {
			return nil, err
		}
		defer client.Close()
		promoteCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if err := datastore.Promote(promoteCtx, client, s.etcd.Name); err != nil {
			return nil, err
		}
	}
	if s.cfg.ClusterInit {
		if err := s.migrateSQLite(ctx); err != nil {
			return nil, err
		}
	}
	return db, nil
}

// migrateSQLite moves a SQLite datastore into etcd once, then renames its
// file so that it is not moved again (and stays as a backup).
func (s *Server) migrateSQLite(ctx context.Context) error {
	dbFile := filepath.Join(s.cfg.DBDir(), "state.db")
	if _, err := os.Stat(dbFile); err != nil {
		return nil
	}
	client, err := datastore.EtcdClient([]string{s.etcd.LocalURL()}, s.tls.EtcdDir())
	if err != nil {
		return err
	}
	defer client.Close()
	n, err := datastore.MigrateSQLite(ctx, s.cfg.DBDir(), client, func(done, total int) {
		klog.InfoS("Moving the SQLite datastore into etcd", "done", done, "total", total)
	})
	if err != nil {
		return fmt.Errorf("moving %s into embedded etcd: %w (nothing was removed; fix the cause and start again)", dbFile, err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(dbFile+suffix, dbFile+suffix+".migrated"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keeping %s aside after moving it into etcd: %w", dbFile+suffix, err)
		}
	}
	klog.InfoS("Moved the SQLite datastore into embedded etcd; the old file is kept", "keys", n, "file", dbFile+".migrated")
	return nil
}

// addEtcdMember is the join API's side of a server joining the embedded
// etcd: a learner at its peer URL.
func (s *Server) addEtcdMember(ctx context.Context, name, peerURL string) (string, []string, error) {
	client, err := datastore.EtcdClient([]string{s.etcd.LocalURL()}, s.tls.EtcdDir())
	if err != nil {
		return "", nil, err
	}
	defer client.Close()
	cluster, err := datastore.AddMember(ctx, client, name, peerURL)
	if err != nil {
		return "", nil, err
	}
	list, err := client.MemberList(ctx)
	if err != nil {
		return "", nil, err
	}
	var urls []string
	for _, m := range list.Members {
		if !m.IsLearner {
			urls = append(urls, m.ClientURLs...)
		}
	}
	return cluster, urls, nil
}

// restoreEtcd restores --cluster-reset-restore-path into the member's data
// dir once: the snapshot restored is recorded, and a restart with the same
// flag starts from the data as it is by then.
func (s *Server) restoreEtcd() error {
	snap := s.cfg.ClusterResetRestorePath
	if snap == "" {
		return nil
	}
	info, err := os.Stat(snap)
	if err != nil {
		return fmt.Errorf("--cluster-reset-restore-path: %w: nothing was changed", err)
	}
	record := filepath.Join(s.cfg.DBDir(), "etcd-restored-from")
	done := fmt.Sprintf("%s %d %s\n", snap, info.Size(), info.ModTime().UTC().Format(time.RFC3339Nano))
	if old, err := os.ReadFile(record); err == nil && string(old) == done {
		klog.InfoS("Already restored from this snapshot; starting from the data as it is (remove --cluster-reset-restore-path)", "snapshot", snap)
		return nil
	}
	if err := datastore.RestoreEtcd(snap, s.etcd, time.Now(), func(format string, args ...any) {
		klog.InfoS("Restoring the embedded etcd: " + fmt.Sprintf(format, args...))
	}); err != nil {
		return err
	}
	return pki.WriteFileIfChanged(record, []byte(done), 0o600)
}
