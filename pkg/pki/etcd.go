package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"

	certutil "k8s.io/client-go/util/cert"
)

// Names of the embedded etcd's files, in EtcdDir: a CA for its clients and
// one for its peers, as etcd's own documentation sets it up.
const (
	EtcdServerCA = "server-ca"
	EtcdPeerCA   = "peer-ca"
	EtcdServing  = "server" // the client port's certificate
	EtcdPeer     = "peer"   // between members, both ends
	EtcdClient   = "client" // the apiserver's and skiff's
)

// EtcdDir holds the embedded etcd's CAs and certificates.
func (d Dir) EtcdDir() Dir { return Dir(filepath.Join(string(d), "etcd")) }

// EtcdCAs are the etcd CAs, which every server of a cluster shares.
func EtcdCAs() []string { return []string{EtcdServerCA, EtcdPeerCA} }

// EnsureEtcd creates what is missing in the etcd directory of dir and
// re-issues certificates that no longer carry the member's addresses ips
// (loopback is always named) or expire within RenewBefore, and returns
// those it issued.
func EnsureEtcd(dir Dir, ips []net.IP) ([]Issued, error) {
	dir = dir.EtcdDir()
	cas := map[string]*authority{}
	for _, name := range EtcdCAs() {
		ca, err := ensureCA(dir, "etcd-"+name, name)
		if err != nil {
			return nil, err
		}
		cas[name] = ca
	}
	names := certutil.AltNames{DNSNames: []string{"localhost"}, IPs: append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, ips...)}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	issued, err := ensureLeaves(dir, cas, []leaf{
		{EtcdServing, EtcdServerCA, certutil.Config{CommonName: "etcd-server", AltNames: names, Usages: both}},
		{EtcdPeer, EtcdPeerCA, certutil.Config{CommonName: "etcd-peer", AltNames: names, Usages: both}},
		{EtcdClient, EtcdServerCA, certutil.Config{CommonName: "etcd-client", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
	})
	for i := range issued {
		issued[i].Name = "etcd/" + issued[i].Name
	}
	if err != nil {
		return issued, fmt.Errorf("etcd: %w", err)
	}
	return issued, nil
}
