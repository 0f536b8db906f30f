package e2e

import (
	"context"
	"crypto/x509"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/tests/harness"
)

// TestCertificates: `skiff certificate check` shows a certificate close to
// its end, the next start renews it, and `skiff certificate rotate`
// (refused while the server runs) makes the next start issue new ones.
func TestCertificates(t *testing.T) {
	s := startServer(t)
	tls := pki.Dir(filepath.Join(s.DataDir, "server", "tls"))
	if out := skiffCommand(t, s, false, "certificate", "rotate"); !strings.Contains(out, "in use by another skiff server; stop it first") {
		t.Errorf("rotate while the server runs: %q", out)
	}
	mustStop(t, s)

	// The admin certificate, re-issued by the same CA to end in 30 days.
	ca, caKey, err := pkiutil.TryLoadCertAndKeyFromDisk(string(tls), pki.ClientCA)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := pkiutil.NewCertAndKey(ca, caKey, &pkiutil.CertConfig{
		Config:   certutil.Config{CommonName: "system:admin", Organization: []string{"system:masters"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		NotAfter: time.Now().Add(30 * 24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pkiutil.WriteCertAndKey(string(tls), pki.ClientAdmin, cert, key); err != nil {
		t.Fatal(err)
	}
	line := lineWith(skiffCommand(t, s, true, "certificate", "check"), "client-admin.crt")
	if !strings.Contains(line, "RENEW") || !strings.Contains(line, " 29 ") {
		t.Errorf("certificate check of an admin certificate ending in 30 days: %q", line)
	}
	t.Logf("certificate check: %s", line)

	mustStart(t, s)
	if renewed := notAfter(t, tls, pki.ClientAdmin); time.Until(renewed) < 300*24*time.Hour {
		t.Errorf("the admin certificate was not renewed at start: it ends %s", renewed)
	}
	checkAPI(t, s)

	oldServing := notAfter(t, tls, pki.ServingAPIServer)
	mustStop(t, s)
	time.Sleep(time.Second) // a new certificate's validity starts in a later second
	if out := skiffCommand(t, s, true, "certificate", "rotate", "--service", "api-server"); !strings.Contains(out, "moved 5 files") {
		t.Errorf("rotate --service api-server: %q", out)
	}
	mustStart(t, s)
	if notAfter(t, tls, pki.ServingAPIServer).Equal(oldServing) {
		t.Error("the apiserver's serving certificate was not re-issued after rotate")
	}
	checkAPI(t, s)
}

// skiffCommand runs skiff with args on the server's data dir and returns
// its output; ok says whether it must succeed or fail.
func skiffCommand(t *testing.T, s *harness.Server, ok bool, args ...string) string {
	t.Helper()
	out, err := exec.Command(s.Bin, append(args, "--data-dir", s.DataDir)...).CombinedOutput()
	if (err == nil) != ok {
		t.Fatalf("skiff %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func lineWith(out, s string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

func notAfter(t *testing.T, dir pki.Dir, name string) time.Time {
	t.Helper()
	cert, err := pkiutil.TryLoadCertFromDisk(string(dir), name)
	if err != nil {
		t.Fatal(err)
	}
	return cert.NotAfter
}

// checkAPI checks the admin kubeconfig the server wrote works.
func checkAPI(t *testing.T, s *harness.Server) {
	t.Helper()
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	if _, err := c.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("the API with the admin kubeconfig: %v", err)
	}
}
