// Package datastore runs kine in-process and tells the apiserver how to reach
// it. kine serves the etcd API on a unix socket in front of SQLite (default),
// Postgres, MySQL, NATS or memory; an etcd endpoint is handed straight to the
// apiserver.
package datastore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers"
	"github.com/k3s-io/kine/pkg/drivers/sqlite"
	"github.com/k3s-io/kine/pkg/endpoint"
	kinetls "github.com/k3s-io/kine/pkg/tls"
	"k8s.io/klog/v2"
)

// Config is the user's choice of datastore, with the flag names k3s uses.
type Config struct {
	Endpoint string // --datastore-endpoint; empty means SQLite in the data dir
	CAFile   string // --datastore-cafile
	CertFile string // --datastore-certfile
	KeyFile  string // --datastore-keyfile
	// CompactInterval is how often kine compacts old revisions (keeping the
	// newest 1000); 0 leaves compaction to the apiserver's requests.
	CompactInterval time.Duration // --datastore-compact-interval
}

// DefaultCompactInterval is kine's compaction period as k3s runs it.
const DefaultCompactInterval = 5 * time.Minute

// compactMinRetain is how many of the newest revisions kine's compaction
// keeps, as k3s runs it.
const compactMinRetain = 1000

// Backend is what the apiserver needs to talk to the running datastore.
type Backend struct {
	Endpoints []string
	CAFile    string
	CertFile  string
	KeyFile   string
	// LeaderElect is kine's word on whether the datastore can carry leases
	// for more than one server.
	LeaderElect bool

	wg *sync.WaitGroup
}

// Wait blocks until kine has stopped after the context given to Start ended,
// so the database is closed before the process exits.
func (b *Backend) Wait() { b.wg.Wait() }

// Scheme returns the endpoint's scheme, "sqlite" for the default.
func Scheme(endpoint string) string {
	if endpoint == "" {
		return "sqlite"
	}
	scheme, _, _ := strings.Cut(endpoint, "://")
	return scheme
}

// CheckEndpoint rejects an endpoint kine has no driver for, without
// contacting anything.
func CheckEndpoint(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	scheme, _, ok := strings.Cut(endpoint, "://")
	if !ok || scheme == "" {
		return errors.New("expected a URI such as sqlite:///path/state.db, memory://, postgres://user:pass@host/db, mysql://user:pass@tcp(host)/db or https://etcd-host:2379")
	}
	if _, known := drivers.Get(scheme); !known {
		return fmt.Errorf("unknown datastore scheme %q", scheme)
	}
	return nil
}

// Redact hides a password in an endpoint for messages and logs.
func Redact(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.User != nil {
		return u.Redacted()
	}
	scheme, rest, ok := strings.Cut(endpoint, "://")
	if at := strings.LastIndex(rest, "@"); ok && at >= 0 {
		return scheme + "://xxxxx@" + rest[at+1:]
	}
	return endpoint
}

// SQLiteEndpoint is the default datastore: a SQLite file in dbDir, with the
// parameters kine itself uses for SQLite.
func SQLiteEndpoint(dbDir string) string {
	return "sqlite://" + filepath.Join(dbDir, "state.db") + "?" + sqlite.DefaultParams
}

// Start starts kine for cfg (when the endpoint needs it) and returns how the
// apiserver reaches the datastore. socket is the unix socket kine listens on.
// kine stops when ctx is cancelled.
func Start(ctx context.Context, cfg Config, dbDir, socket string) (*Backend, error) {
	ep := cfg.Endpoint
	if ep == "" || ep == "sqlite://" {
		ep = SQLiteEndpoint(dbDir)
		if err := os.MkdirAll(dbDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the database directory: %w", err)
		}
	}
	if Scheme(ep) == "sqlite" {
		if err := createSQLite(ep); err != nil {
			return nil, err
		}
	}
	backendTLS := kinetls.Config{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
	klog.InfoS("Starting datastore", "endpoint", Redact(ep), "listener", "unix://"+socket)

	// kine's Config has no usable zero value: these are the defaults of the
	// kine command line, except the compact interval, which k3s also sets so
	// that old revisions really are compacted and stale list continue tokens
	// expire with 410 Gone (tests/e2e checks that they do).
	wg := &sync.WaitGroup{}
	etcd, err := endpoint.Listen(ctx, endpoint.Config{
		WaitGroup:           wg,
		Listener:            "unix://" + socket,
		Endpoint:            ep,
		BackendTLSConfig:    backendTLS,
		NotifyInterval:      5 * time.Second,
		EmulatedETCDVersion: "3.6.11",
		CompactInterval:     cfg.CompactInterval,
		CompactTimeout:      5 * time.Second,
		CompactMinRetain:    compactMinRetain,
		CompactBatchSize:    1000,
		PollBatchSize:       500,
		PollInterval:        time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("starting datastore %s: %w", Redact(ep), err)
	}
	b := &Backend{Endpoints: etcd.Endpoints, LeaderElect: etcd.LeaderElect, wg: wg}
	if Scheme(ep) == "http" || Scheme(ep) == "https" {
		// An etcd cluster: the apiserver talks to it directly with the
		// datastore's client certificate.
		b.CAFile, b.CertFile, b.KeyFile = cfg.CAFile, cfg.CertFile, cfg.KeyFile
	}
	return b, nil
}

// Shared reports whether several servers can share the datastore at
// endpoint: an etcd cluster or a database server, not SQLite or memory.
func Shared(endpoint string) bool {
	switch Scheme(endpoint) {
	case "sqlite", "memory":
		return false
	}
	return true
}
