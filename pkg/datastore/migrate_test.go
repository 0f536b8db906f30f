package datastore

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

type migrateWant struct {
	value       string
	modRevision int64
	leased      bool
}

func TestMigrateSQLiteCopiesTheLiveKeysInOrderOnce(t *testing.T) {
	// Small pages and transactions, so that paging through kine, several
	// transactions and a put on its own all happen.
	defer func(p int64, o, b int) { migratePageSize, migrateTxnOps, migrateTxnBytes = p, o, b }(migratePageSize, migrateTxnOps, migrateTxnBytes)
	migratePageSize, migrateTxnOps, migrateTxnBytes = 7, 5, 4096

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A short path: kine's unix socket goes under it.
	dir, err := os.MkdirTemp("", "kmig")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dbDir := filepath.Join(dir, "db")

	want, deleted := fillSQLite(ctx, t, dbDir, filepath.Join(dir, "kine.sock"))

	etcd := startTestEtcd(t, t.TempDir())

	var calls [][2]int
	n, err := MigrateSQLite(ctx, dbDir, etcd, func(done, total int) { calls = append(calls, [2]int{done, total}) })
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("copied %d keys, want %d", n, len(want))
	}
	if len(calls) == 0 || calls[len(calls)-1] != [2]int{len(want), len(want)} {
		t.Errorf("progress calls %v, want the last to be (%d, %d)", calls, len(want), len(want))
	}
	checkMigrated(ctx, t, etcd, want, deleted)

	// Once: a second call writes nothing.
	before, err := etcd.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := MigrateSQLite(ctx, dbDir, etcd, nil); err != nil || n != 0 {
		t.Fatalf("second migration copied %d keys (error %v), want 0", n, err)
	}
	after, err := etcd.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision {
		t.Errorf("second migration wrote into etcd: revision %d -> %d", before.Header.Revision, after.Header.Revision)
	}

	// A migration that stopped half-way is done again in full.
	if _, err := etcd.Put(ctx, migrateMarkerKey, "in-progress"); err != nil {
		t.Fatal(err)
	}
	if n, err := MigrateSQLite(ctx, dbDir, etcd, nil); err != nil || n != len(want) {
		t.Fatalf("migration after an unfinished one copied %d keys (error %v), want %d", n, err, len(want))
	}
	checkMigrated(ctx, t, etcd, want, deleted)
	if n, err := MigrateSQLite(ctx, dbDir, etcd, nil); err != nil || n != 0 {
		t.Fatalf("migration after a finished one copied %d keys (error %v), want 0", n, err)
	}
}

func TestMigrateSQLiteWithoutDatabaseDoesNothing(t *testing.T) {
	dir := t.TempDir()
	// No etcd needed: it returns before touching the client.
	n, err := MigrateSQLite(context.Background(), filepath.Join(dir, "db"), &clientv3.Client{}, nil)
	if err != nil || n != 0 {
		t.Fatalf("MigrateSQLite = %d, %v; want 0, nil", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "db", "state.db")); err == nil {
		t.Error("created a SQLite database")
	}
}

// fillSQLite writes keys through kine into a new SQLite datastore in dbDir,
// and returns the live ones as kine has them, and the deleted one.
func fillSQLite(ctx context.Context, t *testing.T, dbDir, socket string) (map[string]migrateWant, string) {
	t.Helper()
	kineCtx, stopKine := context.WithCancel(ctx)
	backend, err := Start(kineCtx, Config{}, dbDir, socket)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stopKine(); backend.Wait() }()
	kine, err := clientv3.New(clientv3.Config{Endpoints: backend.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer kine.Close()

	put := func(key, value string, opts ...clientv3.OpOption) {
		t.Helper()
		if _, err := kine.Put(ctx, key, value, opts...); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	// Written in an order unlike the keys' order.
	for i := range 50 {
		j := (i * 17) % 50
		put(fmt.Sprintf("/registry/configmaps/default/cm-%02d", j), fmt.Sprintf(`{"metadata":{"uid":"uid-%02d"},"data":{"v":"1"}}`, j))
	}
	for _, j := range []int{3, 20, 41} {
		for v := 2; v <= 3; v++ {
			put(fmt.Sprintf("/registry/configmaps/default/cm-%02d", j), fmt.Sprintf(`{"metadata":{"uid":"uid-%02d"},"data":{"v":"%d"}}`, j, v))
		}
	}
	deleted := "/registry/configmaps/default/cm-07"
	// kine deletes only through the transaction the apiserver sends, and
	// only at the key's current revision (an unconditional delete fails).
	cur, err := kine.Get(ctx, deleted)
	if err != nil || len(cur.Kvs) != 1 {
		t.Fatalf("get %s: %v %v", deleted, cur, err)
	}
	del, err := kine.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(deleted), "=", cur.Kvs[0].ModRevision)).
		Then(clientv3.OpDelete(deleted)).Else(clientv3.OpGet(deleted)).Commit()
	if err != nil || !del.Succeeded {
		t.Fatalf("delete %s: %v %v", deleted, del, err)
	}
	// An event with a lease, a value too big to share a transaction, and
	// a key outside /registry/.
	lease, err := kine.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	put("/registry/events/default/cm-03.1", `{"reason":"Test"}`, clientv3.WithLease(lease.ID))
	put("/registry/secrets/default/big", strings.Repeat("x", 10000))
	put("/other/key", "other")
	put("/registry/configmaps/default/cm-00", `{"metadata":{"uid":"uid-00"},"data":{"v":"last"}}`)

	resp, err := kine.Get(ctx, "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]migrateWant{}
	for _, kv := range resp.Kvs {
		if string(kv.Key) == kineHealthKey {
			continue
		}
		want[string(kv.Key)] = migrateWant{value: string(kv.Value), modRevision: kv.ModRevision, leased: kv.Lease != 0}
	}
	if len(want) != 49+3 {
		t.Fatalf("kine holds %d keys, want 52", len(want))
	}
	if _, ok := want[deleted]; ok {
		t.Fatalf("kine still holds %s", deleted)
	}
	return want, deleted
}

func checkMigrated(ctx context.Context, t *testing.T, etcd *clientv3.Client, want map[string]migrateWant, deleted string) {
	t.Helper()
	resp, err := etcd.Get(ctx, "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		if key == migrateMarkerKey {
			if !strings.HasPrefix(string(kv.Value), "done ") {
				t.Errorf("marker %q", kv.Value)
			}
			continue
		}
		w, ok := want[key]
		switch {
		case key == deleted:
			t.Errorf("the deleted key %s is in etcd", key)
		case !ok:
			t.Errorf("etcd holds %s, which kine does not", key)
		case string(kv.Value) != w.value:
			t.Errorf("%s = %.40q in etcd, want %.40q", key, kv.Value, w.value)
		case w.leased && kv.Lease == 0:
			t.Errorf("%s has no lease in etcd", key)
		case !w.leased && kv.Lease != 0:
			t.Errorf("%s has a lease in etcd", key)
		}
		got[key] = kv.ModRevision
		if kv.Lease != 0 {
			ttl, err := etcd.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
			if err != nil {
				t.Fatal(err)
			}
			if ttl.TTL < 3500 || ttl.TTL > 3600 {
				t.Errorf("%s has a lease of %ds left, want about 3600", key, ttl.TTL)
			}
		}
	}
	keys := make([]string, 0, len(want))
	for key := range want {
		if _, ok := got[key]; !ok {
			t.Errorf("%s is not in etcd", key)
			continue
		}
		keys = append(keys, key)
	}
	// The keys in kine's order of writes have non-decreasing revisions in
	// etcd (one transaction shares a revision), over several transactions.
	sort.Slice(keys, func(i, j int) bool { return want[keys[i]].modRevision < want[keys[j]].modRevision })
	distinct := 1
	for i := 1; i < len(keys); i++ {
		prev, cur := got[keys[i-1]], got[keys[i]]
		if cur < prev {
			t.Errorf("%s (kine revision %d) has etcd revision %d, before %s (kine revision %d, etcd %d)",
				keys[i], want[keys[i]].modRevision, cur, keys[i-1], want[keys[i-1]].modRevision, prev)
		}
		if cur != prev {
			distinct++
		}
	}
	if distinct < len(keys)/migrateTxnOps {
		t.Errorf("only %d distinct revisions in etcd for %d keys", distinct, len(keys))
	}
}

// startTestEtcd starts a one-member etcd over plain http on free loopback
// ports and returns a client of it.
func startTestEtcd(t *testing.T, dataDir string) *clientv3.Client {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "test", dataDir
	client, peer := freeLoopbackURL(t), freeLoopbackURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true
	member, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(member.Close)
	select {
	case <-member.Server.ReadyNotify():
	case err := <-member.Err():
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("etcd did not become ready")
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func freeLoopbackURL(t *testing.T) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}
