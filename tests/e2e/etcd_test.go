package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

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
	if err := pki.Ensure(tls, pki.ServingNames("cluster.local", net.ParseIP("10.43.0.1"), nil, nil)); err != nil {
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
	log, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	etcd.Stdout, etcd.Stderr = log, log
	etcd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Process.Kill(); _ = etcd.Wait() })

	s := startServer(t, "--datastore-endpoint", endpoint,
		"--datastore-cafile", tls.Cert(pki.ServerCA),
		"--datastore-certfile", tls.Cert(pki.ClientAdmin),
		"--datastore-keyfile", tls.Key(pki.ClientAdmin))
	c, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cm, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "in-etcd"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "server", "db")); !os.IsNotExist(err) {
		t.Errorf("an etcd-backed server made a SQLite directory: %v", err)
	}
	mustStop(t, s)
	mustStart(t, s)
	c = kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	got, err := c.CoreV1().ConfigMaps("default").Get(ctx, "in-etcd", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got.UID != cm.UID || got.ResourceVersion != cm.ResourceVersion {
		t.Errorf("configmap changed across a restart: %s/%s, was %s/%s", got.UID, got.ResourceVersion, cm.UID, cm.ResourceVersion)
	}
}
