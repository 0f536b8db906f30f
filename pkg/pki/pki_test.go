package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"
)

func readAll(t *testing.T, dir Dir) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(string(dir), "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = data
	}
	return out
}

func TestEnsureKeepsWhatIsGoodAndReissuesForNewNames(t *testing.T) {
	dir := Dir(t.TempDir())
	names := ServingNames("cluster.local", net.ParseIP("10.43.0.1"), []net.IP{net.ParseIP("192.0.2.10")}, []string{"skiff.example"})
	if _, err := Ensure(dir, names); err != nil {
		t.Fatal(err)
	}
	first := readAll(t, dir)
	if len(first) != 21 {
		t.Errorf("%d files in the TLS dir, want 21", len(first))
	}
	// The apiserver presents its certificate with the server CA, which a
	// joining node checks against its token.
	if chain := first[ServingAPIServerChain+".crt"]; !bytes.Equal(chain, append(first[ServingAPIServer+".crt"], first[ServerCA+".crt"]...)) {
		t.Errorf("the apiserver's chain is not its certificate then the server CA")
	}
	for name := range first {
		fi, _ := os.Stat(filepath.Join(string(dir), name))
		if strings.HasSuffix(name, ".key") && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %o", name, fi.Mode().Perm())
		}
	}

	if _, err := Ensure(dir, names); err != nil {
		t.Fatal(err)
	}
	for name, data := range readAll(t, dir) {
		if !bytes.Equal(data, first[name]) {
			t.Errorf("%s changed on a second Ensure with the same names", name)
		}
	}

	names.DNSNames = append(names.DNSNames, "new.example")
	if _, err := Ensure(dir, names); err != nil {
		t.Fatal(err)
	}
	after := readAll(t, dir)
	if bytes.Equal(after[ServingAPIServer+".crt"], first[ServingAPIServer+".crt"]) {
		t.Error("serving certificate was not re-issued for a new name")
	}
	if !bytes.Equal(after[ServerCA+".crt"], first[ServerCA+".crt"]) || !bytes.Equal(after[ServerCA+".key"], first[ServerCA+".key"]) {
		t.Error("the CA changed when a leaf was re-issued")
	}
	certs, err := certutil.ParseCertsPEM(after[ServingAPIServer+".crt"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(certs[0].DNSNames, ","), "new.example") {
		t.Errorf("re-issued serving certificate names %v", certs[0].DNSNames)
	}
}

func TestEnsureNeverReplacesABrokenCA(t *testing.T) {
	dir := Dir(t.TempDir())
	if _, err := Ensure(dir, certutil.AltNames{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir.Cert(ClientCA), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, certutil.AltNames{}); err == nil || !strings.Contains(err.Error(), "restore it from a backup") {
		t.Errorf("got %v", err)
	}
	if data, _ := os.ReadFile(dir.Cert(ClientCA)); string(data) != "garbage" {
		t.Error("the broken CA file was overwritten")
	}
}

func TestKubeconfigWriteIsIdempotent(t *testing.T) {
	dir := Dir(t.TempDir())
	if _, err := Ensure(dir, certutil.AltNames{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "admin.yaml")
	kc := Kubeconfig{Server: "https://127.0.0.1:6443", CA: dir.Cert(ServerCA), Cert: dir.Cert(ClientAdmin), Key: dir.Key(ClientAdmin), Embed: true}
	if err := kc.Write(path, 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if err := kc.Write(path, 0o640); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("an unchanged kubeconfig was rewritten")
	}
	if after.Mode().Perm() != 0o640 {
		t.Errorf("mode %o, want the requested 0640", after.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "client-key-data") || strings.Contains(string(data), string(dir)) {
		t.Error("an embedded kubeconfig must carry the data, not paths")
	}
}

func TestEnsureEtcdNamesTheMemberAndKeepsItsCAs(t *testing.T) {
	dir := Dir(t.TempDir())
	ip := net.ParseIP("192.0.2.10")
	if _, err := EnsureEtcd(dir, []net.IP{ip}); err != nil {
		t.Fatal(err)
	}
	cas := readAll(t, dir.EtcdDir())
	for _, name := range []string{EtcdServing, EtcdPeer} {
		cert, _, err := pkiutil.TryLoadCertAndKeyFromDisk(string(dir.EtcdDir()), name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			t.Errorf("%s names %v, not the member's address %s", name, cert.IPAddresses, ip)
		}
	}
	if info, err := os.Stat(dir.EtcdDir().Key(EtcdPeerCA)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("peer CA key: %v %v", info.Mode(), err)
	}
	// A new address re-issues the certificates, never the CAs.
	if _, err := EnsureEtcd(dir, []net.IP{net.ParseIP("192.0.2.11")}); err != nil {
		t.Fatal(err)
	}
	again := readAll(t, dir.EtcdDir())
	for _, f := range []string{EtcdServerCA + ".crt", EtcdPeerCA + ".key"} {
		if !bytes.Equal(cas[f], again[f]) {
			t.Errorf("%s changed", f)
		}
	}
	if bytes.Equal(cas[EtcdPeer+".crt"], again[EtcdPeer+".crt"]) {
		t.Error("the peer certificate was not re-issued for the new address")
	}
}

func TestInventoryAndRotate(t *testing.T) {
	dir := Dir(t.TempDir())
	if _, err := Ensure(dir, certutil.AltNames{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	certs, err := Inventory(string(dir), filepath.Join(t.TempDir(), "absent"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]CertInfo{}
	for _, c := range certs {
		byName[filepath.Base(c.Path)] = c
	}
	if admin := byName[ClientAdmin+".crt"]; admin.Subject != "system:admin" || admin.Status(now) != "OK" || admin.DaysLeft(now) < 360 || admin.IsCA {
		t.Errorf("admin certificate: %+v", admin)
	}
	if ca := byName[ServerCA+".crt"]; !ca.IsCA || ca.DaysLeft(now) < 3600 {
		t.Errorf("server CA: %+v", ca)
	}
	soon := CertInfo{NotAfter: now.Add(100 * 24 * time.Hour)}
	if soon.Status(now) != "RENEW" || (CertInfo{NotAfter: now.Add(-time.Hour)}).Status(now) != "EXPIRED" {
		t.Error("a certificate within the renewal window or past its end is not marked so")
	}

	if _, _, err := Rotate(dir, []string{"no-such-service"}, now); err == nil || !strings.Contains(err.Error(), "known: admin") {
		t.Errorf("an unknown service: %v", err)
	}
	backup, moved, err := Rotate(dir, []string{"admin"}, now)
	if err != nil || len(moved) != 2 {
		t.Fatalf("rotating admin: moved %v, %v", moved, err)
	}
	if _, err := os.Stat(dir.Cert(ClientAdmin)); !os.IsNotExist(err) {
		t.Error("the admin certificate is still in place")
	}
	if _, err := os.Stat(filepath.Join(backup, ClientAdmin+".key")); err != nil {
		t.Errorf("the admin key was not kept aside: %v", err)
	}
	// The next Ensure issues a new one; the backup is not inventoried.
	if _, err := Ensure(dir, certutil.AltNames{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		t.Fatal(err)
	}
	again, _ := Inventory(string(dir))
	if len(again) != len(certs) {
		t.Errorf("after rotation and Ensure: %d certificates, were %d", len(again), len(certs))
	}
}

// A certificate within RenewBefore of its expiry is renewed with the same
// key, so a process reloading the pair never sees a mismatch, and Ensure
// says what it renewed.
func TestEnsureRenewsAnExpiringCertificateWithItsKey(t *testing.T) {
	dir := Dir(t.TempDir())
	names := certutil.AltNames{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	if _, err := Ensure(dir, names); err != nil {
		t.Fatal(err)
	}
	ca, caKey, err := pkiutil.TryLoadCertAndKeyFromDisk(string(dir), ClientCA)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pkiutil.TryLoadKeyFromDisk(string(dir), ClientAdmin)
	if err != nil {
		t.Fatal(err)
	}
	short, err := pkiutil.NewSignedCert(&pkiutil.CertConfig{
		Config:   certutil.Config{CommonName: "system:admin", Organization: []string{"system:masters"}, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		NotAfter: time.Now().Add(30 * 24 * time.Hour),
	}, key, ca, caKey, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := pkiutil.WriteCert(string(dir), ClientAdmin, short); err != nil {
		t.Fatal(err)
	}
	keyBefore, _ := os.ReadFile(dir.Key(ClientAdmin))

	issued, err := Ensure(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(issued) != 1 || issued[0].Name != ClientAdmin || !strings.HasPrefix(issued[0].Reason, "expires") {
		t.Fatalf("issued %+v, want only %s for its expiry", issued, ClientAdmin)
	}
	cert, loaded, err := pkiutil.TryLoadCertAndKeyFromDisk(string(dir), ClientAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(cert.NotAfter) < LeafValidity-24*time.Hour || !cert.NotAfter.Equal(issued[0].NotAfter) {
		t.Errorf("renewed until %v (reported %v)", cert.NotAfter, issued[0].NotAfter)
	}
	if keyAfter, _ := os.ReadFile(dir.Key(ClientAdmin)); !bytes.Equal(keyBefore, keyAfter) {
		t.Error("renewal replaced the key")
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(loaded.Public()) {
		t.Error("the renewed certificate is not for the kept key")
	}
	if again, _ := Ensure(dir, names); len(again) != 0 {
		t.Errorf("a second Ensure issued %+v", again)
	}
}
