package pki

import (
	"crypto/x509"
	"fmt"
	"os"

	certutil "k8s.io/client-go/util/cert"
)

// Names of the node's files in the agent's TLS directory.
const (
	ServingKubelet  = "serving-kubelet"
	ClientKubelet   = "client-kubelet"
	ClientKubeProxy = "client-kube-proxy"
	ClientLocalPath = "client-local-path"

	// LocalPathUser is the local storage provisioner's user name, which
	// manifests/local-storage.yaml grants its rights.
	LocalPathUser = "skiff:local-path-provisioner"
)

// EnsureNode gives a node its identity: in nodeDir, the CA bundles it trusts
// (server-ca to verify the apiserver, client-ca to verify the apiserver's
// calls to the kubelet), a kubelet client certificate for
// system:node:<name>, a kube-proxy client certificate and a kubelet serving
// certificate for names, and a certificate for the node's local storage
// provisioner, all issued by the server's CAs in serverDir. It is
// the in-process half of joining: the server's own agent gets its
// credentials this way.
func EnsureNode(serverDir, nodeDir Dir, nodeName string, names certutil.AltNames) error {
	if err := os.MkdirAll(string(nodeDir), 0o700); err != nil {
		return fmt.Errorf("creating node TLS directory: %w", err)
	}
	cas := map[string]*authority{}
	for _, name := range []string{ClientCA, ServerCA} {
		ca, err := ensureCA(serverDir, name)
		if err != nil {
			return err
		}
		cas[name] = ca
		data, err := os.ReadFile(serverDir.Cert(name))
		if err != nil {
			return err
		}
		if err := WriteFileIfChanged(nodeDir.Cert(name), data, 0o644); err != nil {
			return fmt.Errorf("writing %s for the node: %w", name, err)
		}
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	leaves := []leaf{
		{ClientKubelet, ClientCA, certutil.Config{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}, Usages: client}},
		{ClientKubeProxy, ClientCA, certutil.Config{CommonName: "system:kube-proxy", Usages: client}},
		{ClientLocalPath, ClientCA, certutil.Config{CommonName: LocalPathUser, Usages: client}},
		{ServingKubelet, ServerCA, certutil.Config{CommonName: nodeName, AltNames: names,
			Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}},
	}
	for _, l := range leaves {
		if err := ensureLeaf(nodeDir, cas[l.ca], l); err != nil {
			return err
		}
	}
	return nil
}
