// Package pki creates and keeps the server's certificate authorities,
// certificates and keys under <data-dir>/server/tls, using kubeadm's pkiutil
// for the cryptography and file formats.
//
// Existing CAs are never replaced. Leaf certificates are kept across restarts
// and re-issued only when they no longer verify against their CA, expire
// within RenewBefore, or (serving certificates) lack a required name.
package pki

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"
)

// Names of the files in the TLS directory (<name>.crt and <name>.key).
const (
	ClientCA        = "client-ca"
	ServerCA        = "server-ca"
	RequestHeaderCA = "request-header-ca"

	ServingAPIServer = "serving-kube-apiserver"
	// ServingAPIServerChain is the apiserver's certificate followed by the
	// server CA, which the apiserver presents so that a joining node can
	// check the CA against the hash its token pins.
	ServingAPIServerChain = "serving-kube-apiserver-chain"
	ClientAdmin           = "client-admin"
	ClientAPIServer       = "client-kube-apiserver" // the apiserver's client certificate for kubelets
	ClientController      = "client-controller"
	ClientScheduler       = "client-scheduler"
	ClientAuthProxy       = "client-auth-proxy" // front proxy (aggregation layer)

	ServiceAccountKey = "service" // service.key signs tokens, service.pub verifies them

	// AuthProxyUser is the name the request-header authenticator accepts.
	AuthProxyUser = "system:auth-proxy"
)

const (
	// CAValidity is how long a new CA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// LeafValidity is how long a new leaf certificate is valid.
	LeafValidity = 365 * 24 * time.Hour
	// RenewBefore re-issues leaf certificates this long before they expire.
	RenewBefore = 120 * 24 * time.Hour
)

const keyAlgorithm = kubeadmapi.EncryptionAlgorithmECDSAP256

// Dir is the TLS directory.
type Dir string

// Cert is the path of a certificate in the directory.
func (d Dir) Cert(name string) string { return filepath.Join(string(d), name+".crt") }

// Key is the path of a private key in the directory.
func (d Dir) Key(name string) string { return filepath.Join(string(d), name+".key") }

// PublicKey is the path of a public key in the directory.
func (d Dir) PublicKey(name string) string { return filepath.Join(string(d), name+".pub") }

// leaf describes one certificate issued by one of the CAs.
type leaf struct {
	name, ca string
	config   certutil.Config
}

// Ensure creates whatever is missing in dir and re-issues leaf certificates
// that are no longer good, and returns those it issued. servingNames are
// the names and addresses the apiserver's serving certificate must carry.
// It is safe to call while the server runs: that is how certificates are
// renewed without a restart.
func Ensure(dir Dir, servingNames certutil.AltNames) ([]Issued, error) {
	if err := os.MkdirAll(string(dir), 0o700); err != nil {
		return nil, fmt.Errorf("creating TLS directory: %w", err)
	}
	cas := map[string]*authority{}
	for _, name := range []string{ClientCA, ServerCA, RequestHeaderCA} {
		ca, err := ensureCA(dir, "skiff-"+name, name)
		if err != nil {
			return nil, err
		}
		cas[name] = ca
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	leaves := []leaf{
		{ServingAPIServer, ServerCA, certutil.Config{CommonName: "kube-apiserver", AltNames: servingNames,
			Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
		{ClientAdmin, ClientCA, certutil.Config{CommonName: "system:admin", Organization: []string{"system:masters"}, Usages: client}},
		{ClientAPIServer, ClientCA, certutil.Config{CommonName: "system:apiserver", Organization: []string{"system:masters"}, Usages: client}},
		{ClientController, ClientCA, certutil.Config{CommonName: "system:kube-controller-manager", Usages: client}},
		{ClientScheduler, ClientCA, certutil.Config{CommonName: "system:kube-scheduler", Usages: client}},
		{ClientAuthProxy, RequestHeaderCA, certutil.Config{CommonName: AuthProxyUser, Usages: client}},
	}
	issued, err := ensureLeaves(dir, cas, leaves)
	if err != nil {
		return issued, err
	}
	if err := writeChain(dir, ServingAPIServer, ServerCA, ServingAPIServerChain); err != nil {
		return issued, err
	}
	return issued, ensureServiceAccountKey(dir)
}

// ensureLeaves ensures each leaf with its CA from cas.
func ensureLeaves(dir Dir, cas map[string]*authority, leaves []leaf) ([]Issued, error) {
	var issued []Issued
	for _, l := range leaves {
		i, err := ensureLeaf(dir, cas[l.ca], l)
		if err != nil {
			return issued, err
		}
		if i != nil {
			issued = append(issued, *i)
		}
	}
	return issued, nil
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// ensureCA loads CA name from dir, or makes one whose common name starts
// with prefix.
func ensureCA(dir Dir, prefix, name string) (*authority, error) {
	if pkiutil.CertOrKeyExist(string(dir), name) {
		cert, key, err := pkiutil.TryLoadCertAndKeyFromDisk(string(dir), name)
		if err != nil {
			// Never replace a CA: everything issued by it would stop working.
			return nil, fmt.Errorf("loading CA %s from %s: %w (restore it from a backup, or remove the data dir to start a new cluster)", name, dir, err)
		}
		return &authority{cert, key}, nil
	}
	now := time.Now()
	cert, key, err := pkiutil.NewCertificateAuthority(&pkiutil.CertConfig{
		Config:              certutil.Config{CommonName: prefix + "@" + fmt.Sprint(now.Unix()), NotBefore: now.Add(-time.Hour)},
		NotAfter:            now.Add(CAValidity),
		EncryptionAlgorithm: keyAlgorithm,
	})
	if err != nil {
		return nil, fmt.Errorf("creating CA %s: %w", name, err)
	}
	if err := pkiutil.WriteCertAndKey(string(dir), name, cert, key); err != nil {
		return nil, fmt.Errorf("writing CA %s: %w", name, err)
	}
	klog.InfoS("Created certificate authority", "name", name, "dir", dir)
	return &authority{cert, key}, nil
}

// Issued is a leaf certificate Ensure (re-)issued, and why.
type Issued struct {
	Name, Reason string
	NotAfter     time.Time
}

// ensureLeaf issues l when it is missing or stale. A certificate renewed
// keeps its key, and only the certificate file is replaced (atomically):
// the processes that reload it while running (the apiserver, client-go's
// file-based clients, etcd) never see a key that does not match.
func ensureLeaf(dir Dir, ca *authority, l leaf) (*Issued, error) {
	reason := "missing"
	var key crypto.Signer
	if pkiutil.CertOrKeyExist(string(dir), l.name) {
		cert, loaded, err := pkiutil.TryLoadCertAndKeyFromDisk(string(dir), l.name)
		reason = staleReason(cert, err, ca, l.config)
		if reason == "" {
			return nil, nil
		}
		key = loaded // nil when it did not load: a new one is made
	}
	now := time.Now()
	cfg := &pkiutil.CertConfig{Config: l.config, NotAfter: now.Add(LeafValidity), EncryptionAlgorithm: keyAlgorithm}
	cfg.NotBefore = now.Add(-time.Hour)
	if key == nil {
		var err error
		if key, err = pkiutil.GeneratePrivateKey(keyAlgorithm); err != nil {
			return nil, fmt.Errorf("making the key of %s: %w", l.name, err)
		}
		if err := pkiutil.WriteKey(string(dir), l.name, key); err != nil {
			return nil, fmt.Errorf("writing %s: %w", dir.Key(l.name), err)
		}
	}
	cert, err := pkiutil.NewSignedCert(cfg, key, ca.cert, ca.key, false)
	if err != nil {
		return nil, fmt.Errorf("issuing certificate %s: %w", l.name, err)
	}
	if err := WriteFileIfChanged(dir.Cert(l.name), pkiutil.EncodeCertPEM(cert), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", dir.Cert(l.name), err)
	}
	klog.InfoS("Issued certificate", "name", l.name, "reason", reason, "notAfter", cert.NotAfter)
	return &Issued{Name: l.name, Reason: reason, NotAfter: cert.NotAfter}, nil
}

// staleReason says why a loaded certificate must be re-issued, or "" when it
// is still good.
func staleReason(cert *x509.Certificate, loadErr error, ca *authority, cfg certutil.Config) string {
	if loadErr != nil {
		return "unreadable: " + loadErr.Error()
	}
	if cert.Subject.CommonName != cfg.CommonName {
		return "its name is " + cert.Subject.CommonName + ", want " + cfg.CommonName
	}
	want := cfg.AltNames
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "does not verify against its CA: " + err.Error()
	}
	if time.Until(cert.NotAfter) < RenewBefore {
		return "expires " + cert.NotAfter.String()
	}
	for _, name := range want.DNSNames {
		if !slices.Contains(cert.DNSNames, name) {
			return "lacks name " + name
		}
	}
	for _, ip := range want.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return "lacks address " + ip.String()
		}
	}
	return ""
}

// writeChain writes a certificate followed by its CA's into one file.
func writeChain(dir Dir, leaf, ca, chain string) error {
	var data []byte
	for _, name := range []string{leaf, ca} {
		pem, err := os.ReadFile(dir.Cert(name))
		if err != nil {
			return err
		}
		data = append(data, pem...)
	}
	if err := WriteFileIfChanged(dir.Cert(chain), data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", chain, err)
	}
	return nil
}

func ensureServiceAccountKey(dir Dir) error {
	if pkiutil.CertOrKeyExist(string(dir), ServiceAccountKey) {
		if _, err := pkiutil.TryLoadKeyFromDisk(string(dir), ServiceAccountKey); err != nil {
			return fmt.Errorf("loading service-account key: %w (every issued token depends on it; restore it from a backup)", err)
		}
		return nil
	}
	// RSA, not ECDSA: RS256 is what every consumer of service-account tokens
	// (OIDC discovery clients, cloud IAM) is sure to accept.
	key, err := pkiutil.NewPrivateKey(kubeadmapi.EncryptionAlgorithmRSA2048)
	if err != nil {
		return fmt.Errorf("creating service-account key: %w", err)
	}
	if err := pkiutil.WriteKey(string(dir), ServiceAccountKey, key); err != nil {
		return fmt.Errorf("writing service-account key: %w", err)
	}
	if err := pkiutil.WritePublicKey(string(dir), ServiceAccountKey, key.Public()); err != nil {
		return fmt.Errorf("writing service-account public key: %w", err)
	}
	klog.InfoS("Created service-account signing key", "dir", dir)
	return nil
}

// ServingNames builds the names of the apiserver's serving certificate: the
// in-cluster names of the kubernetes Service, loopback, the host's name and
// the given addresses and extra SANs.
func ServingNames(clusterDomain string, serviceIP net.IP, addresses []net.IP, sans []string) certutil.AltNames {
	names := certutil.AltNames{
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain},
		IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, serviceIP},
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		names.DNSNames = append(names.DNSNames, host)
	}
	names.IPs = append(names.IPs, addresses...)
	for _, san := range sans {
		if ip := net.ParseIP(san); ip != nil {
			names.IPs = append(names.IPs, ip)
		} else {
			names.DNSNames = append(names.DNSNames, san)
		}
	}
	pkiutil.RemoveDuplicateAltNames(&names)
	return names
}
