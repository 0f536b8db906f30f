package pki

import (
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig describes a kubeconfig for one client certificate.
type Kubeconfig struct {
	Server string // https://host:port
	CA     string // path of the CA bundle that verifies the server
	Cert   string // path of the client certificate
	Key    string // path of the client key
	// Embed puts the certificate data in the file, for a kubeconfig that
	// is copied elsewhere; otherwise the file names the paths, so a
	// re-issued certificate is picked up without rewriting it.
	Embed bool
}

// Write writes the kubeconfig to path with mode, replacing the file
// atomically and only when its content changed.
func (k Kubeconfig) Write(path string, mode os.FileMode) error {
	cluster := &clientcmdapi.Cluster{Server: k.Server, CertificateAuthority: k.CA}
	user := &clientcmdapi.AuthInfo{ClientCertificate: k.Cert, ClientKey: k.Key}
	if k.Embed {
		var err error
		if cluster.CertificateAuthorityData, err = os.ReadFile(k.CA); err != nil {
			return err
		}
		if user.ClientCertificateData, err = os.ReadFile(k.Cert); err != nil {
			return err
		}
		if user.ClientKeyData, err = os.ReadFile(k.Key); err != nil {
			return err
		}
		cluster.CertificateAuthority, user.ClientCertificate, user.ClientKey = "", "", ""
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["default"] = cluster
	cfg.AuthInfos["default"] = user
	cfg.Contexts["default"] = &clientcmdapi.Context{Cluster: "default", AuthInfo: "default"}
	cfg.CurrentContext = "default"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encoding kubeconfig %s: %w", path, err)
	}
	return WriteFileIfChanged(path, data, mode)
}
