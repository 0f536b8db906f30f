package e2e

import (
	"context"
	"crypto/rand"
	cryptotls "crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
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

// TestCertificatesRenewWhileRunning: certificates of the server and of its
// node made to expire within the renewal window are renewed without a
// restart. The apiserver and the kubelet then serve the new ones, a watch
// opened before goes on, kubectl works throughout, and each renewal is an
// event.
func TestCertificatesRenewWhileRunning(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the node agent needs root")
	}
	s := newServer(t, t.TempDir()+"/data", "--certificate-check-interval", "2s")
	s.Agent = true
	t.Cleanup(func() { killall(t, s) })
	started := time.Now()
	mustStart(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := kubernetes.NewForConfigOrDie(mustRESTConfig(t, s))
	node := waitNodeReady(t, ctx, c, started)
	tls := pki.Dir(filepath.Join(s.DataDir, "server", "tls"))
	nodeTLS := pki.Dir(filepath.Join(s.DataDir, "agent", "tls"))

	before, err := c.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := c.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: before.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	kubectlFailures := make(chan int)
	stopKubectl := make(chan struct{})
	go func() {
		failed := 0
		for {
			select {
			case <-stopKubectl:
				kubectlFailures <- failed
				return
			case <-time.After(500 * time.Millisecond):
			}
			if out, err := exec.Command(s.Bin, "kubectl", "--kubeconfig", s.Kubeconfig(), "get", "nodes").CombinedOutput(); err != nil {
				t.Logf("kubectl during the renewal: %v: %s", err, out)
				failed++
			}
		}
	}()

	due := []struct {
		dir      pki.Dir
		name, ca string
		servedBy string // the address that serves it, if any
	}{
		{dir: tls, name: pki.ServingAPIServer, ca: pki.ServerCA, servedBy: "127.0.0.1:" + strconv.Itoa(s.Port)},
		{dir: tls, name: pki.ClientController, ca: pki.ClientCA},
		{dir: nodeTLS, name: pki.ClientKubelet, ca: pki.ClientCA},
		{dir: nodeTLS, name: pki.ServingKubelet, ca: pki.ServerCA, servedBy: net.JoinHostPort(nodeIP(t, ctx, c), "10250")},
	}
	for _, d := range due {
		expireSoon(t, d.dir, d.name, tls, d.ca, 30*24*time.Hour)
	}
	renewStart := time.Now()
	for _, d := range due {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
			cert, err := pkiutil.TryLoadCertFromDisk(string(d.dir), d.name)
			return err == nil && time.Until(cert.NotAfter) > 300*24*time.Hour, nil
		})
		if err != nil {
			t.Fatalf("%s was not renewed while running: it ends %s", d.name, notAfter(t, d.dir, d.name))
		}
	}
	t.Logf("four certificates renewed %s after they were due", time.Since(renewStart).Round(time.Millisecond))
	for _, d := range due {
		if d.servedBy == "" {
			continue
		}
		want := notAfter(t, d.dir, d.name)
		var served time.Time
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
			conn, err := cryptotls.Dial("tcp", d.servedBy, &cryptotls.Config{InsecureSkipVerify: true})
			if err != nil {
				return false, nil
			}
			defer conn.Close()
			served = conn.ConnectionState().PeerCertificates[0].NotAfter
			return served.Equal(want), nil
		})
		if err != nil {
			t.Errorf("%s still serves a certificate ending %s, not the renewed one ending %s", d.servedBy, served, want)
		} else {
			t.Logf("%s serves the renewed %s %s after it was due", d.servedBy, d.name, time.Since(renewStart).Round(time.Millisecond))
		}
	}

	// The watch opened before the renewal still delivers.
	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-renewal"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev, ok := <-watch.ResultChan():
		if !ok || ev.Object.(*corev1.ConfigMap).Name != "after-renewal" {
			t.Errorf("the watch opened before the renewal gave %v (open %v)", ev.Type, ok)
		}
	case <-time.After(10 * time.Second):
		t.Error("the watch opened before the renewal delivered nothing in 10s")
	}
	// The renewed kubelet still reports: the node stays Ready.
	waitNodeReady(t, ctx, c, time.Now())
	close(stopKubectl)
	if failed := <-kubectlFailures; failed > 0 {
		t.Errorf("kubectl failed %d times during the renewal", failed)
	}

	for ns, reason := range map[string]string{"kube-system": "server", "default": "node " + node} {
		list, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=CertificateRenewed"})
		if err != nil || len(list.Items) == 0 {
			t.Errorf("no CertificateRenewed event in %s for the %s: %v", ns, reason, err)
			continue
		}
		t.Logf("event in %s: %s", ns, list.Items[0].Message)
	}
}

// expireSoon re-signs a certificate, with its key and names, by the CA ca
// of caDir so that it ends within validity, as one close to its end does.
func expireSoon(t *testing.T, dir pki.Dir, name string, caDir pki.Dir, ca string, validity time.Duration) {
	t.Helper()
	cert, err := pkiutil.TryLoadCertFromDisk(string(dir), name)
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey, err := pkiutil.TryLoadCertAndKeyFromDisk(string(caDir), ca)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *cert
	tmpl.NotAfter = time.Now().Add(validity)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, caCert, cert.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileIfChanged(dir.Cert(name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}
