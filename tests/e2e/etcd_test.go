package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/tests/harness"
)

// TestExternalEtcd runs the server on a real etcd (built from its Go
// module) over TLS with client certificates, given through the k3s flags
// --datastore-endpoint, --datastore-cafile, --datastore-certfile and
// --datastore-keyfile, and checks that objects survive a restart there.
func TestExternalEtcd(t *testing.T) {
	dir := t.TempDir()
	etcdBin := filepath.Join(dir, "etcd")
	if out, err := exec.Command("go", "build", "-o", etcdBin, "go.etcd.io/etcd/server/v3").CombinedOutput(); err != nil {
		t.Fatalf("building etcd: %v\n%s", err, out)
	}
	// Certificates for etcd: a server certificate for 127.0.0.1 from one CA,
	// client certificates from another.
	tls := pki.Dir(filepath.Join(dir, "etcd-tls"))
	if _, err := pki.Ensure(tls, pki.ServingNames("cluster.local", net.ParseIP("10.43.0.1"), nil, nil)); err != nil {
		t.Fatal(err)
	}
	clientPort, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	peerPort, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "https://127.0.0.1:" + strconv.Itoa(clientPort)
	etcd := exec.Command(etcdBin, "--data-dir", filepath.Join(dir, "etcd-data"),
		"--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
		"--listen-peer-urls", "http://127.0.0.1:"+strconv.Itoa(peerPort),
		"--cert-file", tls.Cert(pki.ServingAPIServer), "--key-file", tls.Key(pki.ServingAPIServer),
		"--client-cert-auth", "--trusted-ca-file", tls.Cert(pki.ClientCA))
	startDaemon(t, etcd, filepath.Join(dir, "etcd.log"), syscall.SIGTERM)
	waitForPort(t, "127.0.0.1:"+strconv.Itoa(clientPort))

	s := startServer(t, "--datastore-endpoint", endpoint,
		"--datastore-cafile", tls.Cert(pki.ServerCA),
		"--datastore-certfile", tls.Cert(pki.ClientAdmin),
		"--datastore-keyfile", tls.Key(pki.ClientAdmin))
	if _, err := os.Stat(filepath.Join(s.DataDir, "server", "db")); !os.IsNotExist(err) {
		t.Errorf("an etcd-backed server made a SQLite directory: %v", err)
	}
	checkObjectSurvivesRestart(t, s)
}
