package datastore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/klog/v2"
)

// Limits of the SQLite to etcd copy. Variables so that tests can make the
// pages and transactions small.
var (
	// migratePageSize is how many keys one range request to kine returns.
	migratePageSize int64 = 500
	// migrateTxnOps is the most puts in one etcd transaction (etcd's
	// --max-txn-ops defaults to 128).
	migrateTxnOps = 100
	// migrateTxnBytes bounds the keys and values of one transaction, well
	// under etcd's default --max-request-bytes of 1.5 MiB. A key whose value
	// alone exceeds it is put on its own.
	migrateTxnBytes = 1 << 20
)

const (
	// migrateMarkerKey records in etcd that a migration has started
	// ("in-progress") or finished ("done"). It is outside the apiserver's
	// /registry/ prefix. A copy that failed half-way leaves Kubernetes keys
	// in etcd together with "in-progress", and the next MigrateSQLite copies
	// everything again instead of taking the partial copy for a finished one.
	migrateMarkerKey = "/skiff/migrated-from-sqlite"
	// migrateOpOverhead approximates the protobuf framing of one put.
	migrateOpOverhead = 64
	// migrateProgressEvery is how often (in keys) progress is reported.
	migrateProgressEvery = 1000
	// migrateDefaultLeaseTTL is the lease given to a key whose kine lease is
	// not a plausible TTL.
	migrateDefaultLeaseTTL = int64(time.Hour / time.Second)
	// migrateMaxLeaseTTL is the longest kine lease taken as it is.
	migrateMaxLeaseTTL = int64(7 * 24 * time.Hour / time.Second)
)

// kineHealthKey is the key kine writes into its own database at start to
// check it; Kubernetes does not use it.
const kineHealthKey = "/registry/health"

// migrateKV is one live key of the SQLite datastore.
type migrateKV struct {
	key         string
	value       []byte
	modRevision int64
	lease       int64 // kine's lease ID, which is its TTL in seconds
}

// MigrateSQLite copies every key of the SQLite datastore in dbDir (state.db) into etcd
// through client, oldest write first, so that objects keep their UIDs (which are in
// their values) and their resourceVersions keep their order. It runs kine on the
// SQLite file (on a unix socket under dbDir) for the duration of the copy. It writes
// nothing into etcd if etcd already holds Kubernetes keys (prefix "/registry/"):
// returns (0, nil) in that case after logging. Returns the number of keys copied.
// progress, if non-nil, is called every 1000 keys and at the end with (copied, total).
//
// Nothing else may use the SQLite file meanwhile (the server's own kine must
// not be running). The SQLite file is left in place; renaming it afterwards,
// as k3s does, is up to the caller.
//
// Details:
//   - The keys are read from one snapshot of kine (every page at the
//     revision of the first), all keys under "/" except kine's own
//     /registry/health; kine's compact_rev_key is outside "/" and etcd keeps
//     its own.
//   - Puts are batched into transactions, and all keys of one transaction get
//     the same revision in etcd: resourceVersions keep their order but not
//     their values (etcd's revisions start afresh) and neighbours may share
//     one. Clients re-list when the apiserver restarts on etcd anyway.
//   - Leases are not copied as such (kine's are not real leases). A key that
//     had one in kine (Kubernetes Events, apiserver leases) gets an etcd
//     lease of the same TTL, counted from the copy: kine's lease ID is its
//     TTL in seconds, and kine itself restarts the TTLs when it starts. An
//     implausible TTL is replaced by one hour. Without a lease these keys
//     would never expire.
//   - A copy that failed part-way is copied again in full by the next call:
//     a marker key outside /registry/ tells a partial copy from a finished
//     one (see migrateMarkerKey).
func MigrateSQLite(ctx context.Context, dbDir string, client *clientv3.Client, progress func(done, total int)) (int, error) {
	if client == nil {
		return 0, errors.New("migrating the SQLite datastore: no etcd client")
	}
	dbFile := filepath.Join(dbDir, "state.db")
	if _, err := os.Stat(dbFile); errors.Is(err, fs.ErrNotExist) {
		klog.InfoS("No SQLite datastore to migrate to etcd", "db", dbFile)
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("checking the SQLite datastore: %w", err)
	}

	resume, skip, err := migrateCheckEtcd(ctx, client)
	if err != nil {
		return 0, err
	}
	if skip {
		klog.InfoS("etcd already holds Kubernetes data; not migrating the SQLite datastore", "db", dbFile)
		return 0, nil
	}

	started := time.Now()
	klog.InfoS("Migrating the datastore from SQLite to etcd", "db", dbFile, "resumingFailedMigration", resume)
	kvs, err := migrateReadKine(ctx, dbDir)
	if err != nil {
		return 0, err
	}
	// Oldest write first. kine gives each write its own revision, so there
	// are no ties; stable anyway.
	sort.SliceStable(kvs, func(i, j int) bool { return kvs[i].modRevision < kvs[j].modRevision })

	if _, err := client.Put(ctx, migrateMarkerKey, "in-progress"); err != nil {
		return 0, fmt.Errorf("marking the migration as started in etcd: %w", err)
	}
	copied, err := migrateWriteEtcd(ctx, client, kvs, progress)
	if err != nil {
		return copied, fmt.Errorf("migrating the SQLite datastore to etcd after %d of %d keys: %w", copied, len(kvs), err)
	}
	if _, err := client.Put(ctx, migrateMarkerKey, "done "+time.Now().UTC().Format(time.RFC3339)); err != nil {
		return copied, fmt.Errorf("marking the migration as done in etcd: %w", err)
	}
	klog.InfoS("Migrated the datastore from SQLite to etcd", "db", dbFile, "keys", copied, "duration", time.Since(started).Round(time.Millisecond))
	return copied, nil
}

// migrateCheckEtcd tells whether etcd already holds Kubernetes keys (skip),
// and whether they come from a migration that did not finish (resume).
func migrateCheckEtcd(ctx context.Context, client *clientv3.Client) (resume, skip bool, err error) {
	// Two keys: one of them may be a /registry/health someone wrote.
	resp, err := client.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(2))
	if err != nil {
		return false, false, fmt.Errorf("checking etcd for Kubernetes keys: %w", err)
	}
	hasData := false
	for _, kv := range resp.Kvs {
		if string(kv.Key) != kineHealthKey {
			hasData = true
		}
	}
	if !hasData {
		return false, false, nil
	}
	marker, err := client.Get(ctx, migrateMarkerKey)
	if err != nil {
		return false, false, fmt.Errorf("checking etcd for an unfinished migration: %w", err)
	}
	if len(marker.Kvs) == 1 && string(marker.Kvs[0].Value) == "in-progress" {
		return true, false, nil
	}
	return false, true, nil
}

// migrateReadKine runs kine on the SQLite file in dbDir and reads all its
// live keys at one revision.
func migrateReadKine(ctx context.Context, dbDir string) ([]migrateKV, error) {
	socket := filepath.Join(dbDir, "migrate-kine.sock")
	// A unix socket path must fit in sun_path (108 bytes on Linux).
	if abs, err := filepath.Abs(socket); err != nil || len(abs) > 100 {
		tmp, err := os.MkdirTemp("", "skiff-migrate")
		if err != nil {
			return nil, fmt.Errorf("creating a directory for kine's socket: %w", err)
		}
		defer os.RemoveAll(tmp)
		socket = filepath.Join(tmp, "kine.sock")
	}

	kineCtx, stopKine := context.WithCancel(ctx)
	backend, err := Start(kineCtx, Config{}, dbDir, socket)
	if err != nil {
		stopKine()
		return nil, fmt.Errorf("starting kine on the SQLite datastore: %w", err)
	}
	defer func() {
		stopKine()
		backend.Wait()
		_ = os.Remove(socket)
	}()

	kine, err := clientv3.New(clientv3.Config{
		Endpoints:   backend.Endpoints,
		DialTimeout: 10 * time.Second,
		Context:     kineCtx,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to kine at %v: %w", backend.Endpoints, err)
	}
	defer kine.Close()

	// kine serves a range [key, end) in key order with a limit, and a
	// revision to read at; it rejects sort options and serializable reads.
	// A page starts at the previous page's last key, which is skipped: kine
	// compares names in SQL, and a start key of last+"\x00" is best avoided.
	const end = "0" // "/" + 1: everything under "/"
	var (
		kvs      []migrateKV
		start    = "/"
		last     string
		revision int64
	)
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading the SQLite datastore: %w", err)
		}
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(migratePageSize)}
		if revision != 0 {
			opts = append(opts, clientv3.WithRev(revision))
		}
		resp, err := kine.Get(ctx, start, opts...)
		if err != nil {
			return nil, fmt.Errorf("reading keys from %q of the SQLite datastore at revision %d: %w", start, revision, err)
		}
		if revision == 0 {
			revision = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			key := string(kv.Key)
			if key == last || key == kineHealthKey {
				continue
			}
			kvs = append(kvs, migrateKV{key: key, value: kv.Value, modRevision: kv.ModRevision, lease: kv.Lease})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		next := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if next == last {
			return nil, fmt.Errorf("reading the SQLite datastore: kine's paging is stuck at %q", next)
		}
		start, last = next, next
	}
	return kvs, nil
}

// migrateWriteEtcd puts kvs into etcd in their order, in transactions.
func migrateWriteEtcd(ctx context.Context, client *clientv3.Client, kvs []migrateKV, progress func(done, total int)) (int, error) {
	leases := map[int64]clientv3.LeaseID{} // by TTL
	leaseFor := func(kineLease int64) (clientv3.LeaseID, error) {
		ttl := kineLease
		if ttl > migrateMaxLeaseTTL {
			ttl = migrateDefaultLeaseTTL
		}
		if id, ok := leases[ttl]; ok {
			return id, nil
		}
		resp, err := client.Grant(ctx, ttl)
		if err != nil {
			return 0, fmt.Errorf("granting an etcd lease of %ds: %w", ttl, err)
		}
		leases[ttl] = resp.ID
		return resp.ID, nil
	}

	var (
		copied     int
		reported   = -1
		ops        []clientv3.Op
		batch      []string // keys of ops, for errors
		batchBytes int
	)
	report := func() {
		if progress != nil && copied/migrateProgressEvery > reported/migrateProgressEvery && reported != copied {
			progress(copied, len(kvs))
			reported = copied
		}
	}
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		var err error
		if len(ops) == 1 {
			_, err = client.Do(ctx, ops[0])
		} else {
			_, err = client.Txn(ctx).Then(ops...).Commit()
		}
		if err != nil {
			if len(batch) == 1 {
				return fmt.Errorf("putting %s into etcd: %w", batch[0], err)
			}
			return fmt.Errorf("putting %d keys from %s to %s into etcd: %w", len(batch), batch[0], batch[len(batch)-1], err)
		}
		copied += len(ops)
		ops, batch, batchBytes = ops[:0], batch[:0], 0
		report()
		return nil
	}

	for _, kv := range kvs {
		if err := ctx.Err(); err != nil {
			return copied, err
		}
		var opts []clientv3.OpOption
		if kv.lease > 0 {
			id, err := leaseFor(kv.lease)
			if err != nil {
				return copied, err
			}
			opts = append(opts, clientv3.WithLease(id))
		}
		size := len(kv.key) + len(kv.value) + migrateOpOverhead
		if len(ops) > 0 && (len(ops) >= migrateTxnOps || batchBytes+size > migrateTxnBytes) {
			if err := flush(); err != nil {
				return copied, err
			}
		}
		ops = append(ops, clientv3.OpPut(kv.key, string(kv.value), opts...))
		batch = append(batch, kv.key)
		batchBytes += size
		// A big value goes on its own, in order: flush it at once.
		if batchBytes > migrateTxnBytes {
			if err := flush(); err != nil {
				return copied, err
			}
		}
	}
	if err := flush(); err != nil {
		return copied, err
	}
	if progress != nil && reported != copied {
		progress(copied, len(kvs))
	}
	return copied, nil
}
