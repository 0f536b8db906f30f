package supervisor

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"github.com/skiff-dev/skiff/pkg/pki"
)

func TestTokens(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	for in, want := range map[string]Token{
		"K10" + hash + "::abcdef.0123456789abcdef": {CAHash: hash, ID: "abcdef", Secret: "0123456789abcdef"},
		"abcdef.0123456789abcdef":                  {ID: "abcdef", Secret: "0123456789abcdef"},
	} {
		got, err := ParseToken(in)
		if err != nil || got != want {
			t.Errorf("ParseToken(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("%q prints as %q", in, got.String())
		}
	}
	// A passphrase maps to the same bootstrap token everywhere, in form.
	a, _ := ParseToken("node:my secret")
	b, _ := ParseToken("K10" + hash + "::node:my secret")
	if a.ID != b.ID || a.Secret != b.Secret || !bootstrapTokenPattern.MatchString(a.Bearer()) {
		t.Errorf("passphrase tokens: %+v %+v", a, b)
	}
	if c, _ := ParseToken("node:another"); c.ID == a.ID {
		t.Error("two passphrases map to one token")
	}
	for _, bad := range []string{"", "K10nothex::x", "K10" + hash + "::"} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("ParseToken(%q) accepted", bad)
		}
	}
}

// testServer serves the join API over TLS with a certificate chain as the
// apiserver presents it (its certificate, then the server CA), with no
// apiserver in front (so no authentication).
func testServer(t *testing.T) (*httptest.Server, pki.Dir, *fake.Clientset) {
	t.Helper()
	dir := pki.Dir(t.TempDir())
	if _, err := pki.Ensure(dir, certutil.AltNames{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	h, err := NewHandler(AgentConfig{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", LocalStorage: true},
		dir, []net.IP{net.ParseIP("192.0.2.10")}, client, ServerSide{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	cert, err := tls.LoadX509KeyPair(dir.Cert(pki.ServingAPIServerChain), dir.Key(pki.ServingAPIServer))
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, dir, client
}

func serverCAHash(t *testing.T, dir pki.Dir) string {
	ca, err := pkiutil.TryLoadCertFromDisk(string(dir), pki.ServerCA)
	if err != nil {
		t.Fatal(err)
	}
	return CAHash(ca)
}

func joinOptions(t *testing.T, srv *httptest.Server, token Token, node string) JoinOptions {
	t.Helper()
	nodeDir := t.TempDir()
	return JoinOptions{
		Server: srv.URL, Token: token, NodeName: node, Addresses: []net.IP{net.ParseIP("192.0.2.20")},
		TLSDir: pki.Dir(filepath.Join(nodeDir, "tls")), PasswordFile: filepath.Join(nodeDir, "node-password"),
	}
}

func TestJoinPinsTheCAAndGetsCertificatesForItsKeys(t *testing.T) {
	srv, dir, _ := testServer(t)
	token := Token{CAHash: serverCAHash(t, dir), ID: "abcdef", Secret: "0123456789abcdef"}
	o := joinOptions(t, srv, token, "edge-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := Join(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClusterCIDR != "10.42.0.0/16" || cfg.APIVersion != APIVersion {
		t.Errorf("config %+v", cfg)
	}
	for purpose, name := range fileFor {
		cert, err := pkiutil.TryLoadCertFromDisk(string(o.TLSDir), name)
		if err != nil {
			t.Fatalf("%s: %v", purpose, err)
		}
		key, err := pkiutil.TryLoadKeyFromDisk(string(o.TLSDir), name)
		if err != nil {
			t.Fatalf("%s key: %v", purpose, err)
		}
		if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Errorf("%s: the certificate is not for the node's own key", purpose)
		}
		if info, _ := os.Stat(o.TLSDir.Key(name)); info.Mode().Perm() != 0o600 {
			t.Errorf("%s key mode %v", purpose, info.Mode().Perm())
		}
	}
	kubelet, _ := pkiutil.TryLoadCertFromDisk(string(o.TLSDir), pki.ClientKubelet)
	if kubelet.Subject.CommonName != "system:node:edge-1" || kubelet.Subject.Organization[0] != "system:nodes" {
		t.Errorf("kubelet client certificate for %v", kubelet.Subject)
	}
	serving, _ := pkiutil.TryLoadCertFromDisk(string(o.TLSDir), pki.ServingKubelet)
	roots := x509.NewCertPool()
	ca, _ := pkiutil.TryLoadCertFromDisk(string(dir), pki.ServerCA)
	roots.AddCert(ca)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: "192.0.2.20"}); err != nil {
		t.Errorf("kubelet serving certificate: %v", err)
	}

	// Another CA than the one the token pins: refused before the token
	// is sent, and at once.
	token.CAHash = strings.Repeat("0", 64)
	start := time.Now()
	if _, err := Join(ctx, joinOptions(t, srv, token, "edge-2")); err == nil || !strings.Contains(err.Error(), "does not match the token") {
		t.Errorf("a server with another CA: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("a CA mismatch was retried")
	}
}

func TestNodeNameTakenByAnotherPassword(t *testing.T) {
	srv, dir, client := testServer(t)
	token := Token{CAHash: serverCAHash(t, dir), ID: "abcdef", Secret: "0123456789abcdef"}
	ctx := context.Background()
	first := joinOptions(t, srv, token, "edge")
	if _, err := Join(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, err := Join(ctx, first); err != nil {
		t.Fatalf("the same node again: %v", err)
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "edge"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	impostor := joinOptions(t, srv, token, "edge") // another password file
	_, err := Join(ctx, impostor)
	if err == nil || !strings.Contains(err.Error(), "--with-node-id") || !strings.Contains(err.Error(), "kubectl delete node edge") {
		t.Fatalf("a second node with the name: %v", err)
	}
	// Once the old Node is deleted, the name is free.
	if err := client.CoreV1().Nodes().Delete(ctx, "edge", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Join(ctx, impostor); err != nil {
		t.Errorf("after the old node was deleted: %v", err)
	}
}

func TestHandlerDecidesIdentities(t *testing.T) {
	_, dir, client := testServer(t)
	h, err := NewHandler(AgentConfig{}, dir, []net.IP{net.ParseIP("192.0.2.10")}, client, ServerSide{})
	if err != nil {
		t.Fatal(err)
	}
	o := JoinOptions{NodeName: "edge", TLSDir: pki.Dir(t.TempDir())}
	csr := func(purpose string, tweak func(*JoinOptions)) string {
		oo := o
		if tweak != nil {
			tweak(&oo)
		}
		pem, err := certificateRequest(oo, purpose)
		if err != nil {
			t.Fatal(err)
		}
		return pem
	}
	remote := net.ParseIP("192.0.2.20")
	for name, req := range map[string]NodeRequest{
		"kubelet certificate for another node": {NodeName: "other", CSRs: map[string]string{CertKubeletClient: csr(CertKubeletClient, nil)}},
		"serving certificate for the apiserver's address": {NodeName: "edge", CSRs: map[string]string{
			CertKubeletServing: csr(CertKubeletServing, func(o *JoinOptions) { o.Addresses = []net.IP{net.ParseIP("192.0.2.10")} }),
		}},
		"unknown purpose": {NodeName: "edge", CSRs: map[string]string{"admin": csr(CertKubeProxy, nil)}},
	} {
		req.NodePassword = strings.Repeat("p", 32)
		if _, err := h.node(context.Background(), &req, remote); err == nil {
			t.Errorf("%s: signed", name)
		} else if je, ok := err.(*joinError); !ok || je.status != http.StatusBadRequest {
			t.Errorf("%s: %v, want a 400 refusal", name, err)
		}
	}
}
