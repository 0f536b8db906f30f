package supervisor

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"

	"github.com/skiff-dev/skiff/pkg/pki"
)

// JoinOptions say how a node joins.
type JoinOptions struct {
	// Server is the apiserver's URL, https://host:port.
	Server   string
	Token    Token
	NodeName string
	// Addresses go into the kubelet's serving certificate.
	Addresses []net.IP
	// TLSDir receives the node's keys (made here, never sent), its
	// certificates and the CAs.
	TLSDir pki.Dir
	// PasswordFile holds the node's password, made at its first join.
	PasswordFile string
}

// Join asks the server for the cluster's configuration and the node's
// certificates. It waits, with backoff, while the server cannot be reached,
// and fails at once on a token the server refuses, a server whose CA the
// token does not pin, or a node name taken by another node.
func Join(ctx context.Context, o JoinOptions) (*AgentConfig, error) {
	password, err := nodePassword(o.PasswordFile)
	if err != nil {
		return nil, err
	}
	c, err := newJoinClient(o)
	if err != nil {
		return nil, err
	}
	var cfg AgentConfig
	if err := c.call(ctx, http.MethodGet, PathConfig, nil, &cfg); err != nil {
		return nil, err
	}
	if cfg.APIVersion != APIVersion {
		return nil, fmt.Errorf("the server at %s speaks the join API %q, this skiff %q: run the same skiff version on both", o.Server, cfg.APIVersion, APIVersion)
	}
	purposes := []string{CertKubeletClient, CertKubeletServing, CertKubeProxy, CertFlannel}
	if cfg.LocalStorage {
		purposes = append(purposes, CertLocalPath)
	}
	req := NodeRequest{APIVersion: APIVersion, Kind: "NodeRequest", NodeName: o.NodeName, NodePassword: password, CSRs: map[string]string{}}
	for _, p := range purposes {
		if req.CSRs[p], err = certificateRequest(o, p); err != nil {
			return nil, err
		}
	}
	var resp NodeResponse
	if err := c.call(ctx, http.MethodPost, PathNode, req, &resp); err != nil {
		return nil, err
	}
	for _, p := range purposes {
		cert, ok := resp.Certificates[p]
		if !ok {
			return nil, fmt.Errorf("the server sent no %s certificate", p)
		}
		if err := pki.WriteFileIfChanged(o.TLSDir.Cert(fileFor[p]), []byte(cert), 0o644); err != nil {
			return nil, err
		}
	}
	for name, pem := range map[string]string{pki.ServerCA: resp.ServerCA, pki.ClientCA: resp.ClientCA} {
		if err := pki.WriteFileIfChanged(o.TLSDir.Cert(name), []byte(pem), 0o644); err != nil {
			return nil, err
		}
	}
	klog.InfoS("Joined the cluster", "server", o.Server, "node", o.NodeName)
	return &cfg, nil
}

// fileFor names each certificate's files in the node's TLS directory.
var fileFor = map[string]string{
	CertKubeletClient:  pki.ClientKubelet,
	CertKubeletServing: pki.ServingKubelet,
	CertKubeProxy:      pki.ClientKubeProxy,
	CertLocalPath:      pki.ClientLocalPath,
	CertFlannel:        pki.ClientFlannel,
}

// certificateRequest makes (or reuses) the key for a purpose and a request
// for the identity the server will check.
func certificateRequest(o JoinOptions, purpose string) (string, error) {
	name := fileFor[purpose]
	key, err := nodeKey(o.TLSDir, name)
	if err != nil {
		return "", err
	}
	subject := &pkix.Name{}
	var dns []string
	var ips []net.IP
	switch purpose {
	case CertKubeletClient:
		subject.CommonName, subject.Organization = "system:node:"+o.NodeName, []string{"system:nodes"}
	case CertKubeProxy:
		subject.CommonName = "system:kube-proxy"
	case CertLocalPath:
		subject.CommonName = pki.LocalPathUser
	case CertFlannel:
		subject.CommonName = pki.FlannelUser
	case CertKubeletServing:
		subject.CommonName = o.NodeName
		dns = []string{o.NodeName, "localhost"}
		ips = append([]net.IP{net.IPv4(127, 0, 0, 1)}, o.Addresses...)
	}
	csr, err := certutil.MakeCSR(key, subject, dns, ips)
	if err != nil {
		return "", fmt.Errorf("making the %s certificate request: %w", purpose, err)
	}
	return string(csr), nil
}

// nodeKey loads the node's key for a certificate, or makes one (0600).
func nodeKey(dir pki.Dir, name string) (crypto.Signer, error) {
	if key, err := pkiutil.TryLoadKeyFromDisk(string(dir), name); err == nil {
		return key, nil
	}
	if err := os.MkdirAll(string(dir), 0o700); err != nil {
		return nil, err
	}
	key, err := pkiutil.NewPrivateKey(kubeadmapi.EncryptionAlgorithmECDSAP256)
	if err != nil {
		return nil, err
	}
	if err := pkiutil.WriteKey(string(dir), name, key); err != nil {
		return nil, fmt.Errorf("writing the node's %s key: %w", name, err)
	}
	return key, nil
}

// nodePassword reads the node's password, or makes and stores one.
func nodePassword(path string) (string, error) { return pki.RandomSecret(path, 16) }

// joinClient talks to the join API over TLS that is verified against the
// CA the token pins, checked before the token is sent.
type joinClient struct {
	server *url.URL
	token  Token
	http   *http.Client
	warn   sync.Once
}

func newJoinClient(o JoinOptions) (*joinClient, error) {
	u, err := url.Parse(o.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want https://host:port, such as https://192.0.2.10:6443", o.Server)
	}
	c := &joinClient{server: u, token: o.Token}
	tlsConfig := &tls.Config{
		// Verified in VerifyConnection, against the pinned CA.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection:   c.verify,
		MinVersion:         tls.VersionTLS12,
	}
	c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment}}
	return c, nil
}

// verify accepts the server when its chain holds the CA the token pins and
// its certificate verifies against that CA for the server's host. A token
// without a hash trusts the CA the server presents, and says so.
func (c *joinClient) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server presented no certificate")
	}
	var ca *x509.Certificate
	if c.token.CAHash != "" {
		var err error
		if ca, err = checkPinned(cs.PeerCertificates, c.token.CAHash); err != nil {
			return &fatalError{err}
		}
	} else {
		for _, cert := range cs.PeerCertificates[1:] {
			if cert.IsCA {
				ca = cert
			}
		}
		if ca == nil {
			return &fatalError{errors.New("the server sent no CA with its certificate, and the token pins none: use the full K10… token from the server's <data-dir>/server/agent-token")}
		}
		c.warn.Do(func() {
			klog.InfoS("The token does not pin the server's CA: trusting the CA the server presents. Use the full K10… token to pin it.", "server", c.server.Host, "caHash", CAHash(ca))
		})
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, DNSName: c.server.Hostname()}); err != nil {
		return &fatalError{fmt.Errorf("the server's certificate does not verify for %s: %w", c.server.Hostname(), err)}
	}
	return nil
}

// fatalError is a refusal that waiting will not change.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// How long the client waits: for a server that cannot be reached, with
// growing pauses, as long as ctx lets it; for a refusal of the token or of
// its rights, a few seconds (a token or grant the server has just made
// takes a moment to be seen).
const (
	retryFirst   = 500 * time.Millisecond
	retryMax     = 15 * time.Second
	refusalGrace = 5 * time.Second
)

// call does one join API request, retrying as described above, and decodes
// the JSON answer into out.
func (c *joinClient) call(ctx context.Context, method, path string, in, out any) error {
	wait := retryFirst
	var firstRefusal time.Time
	for {
		err := c.once(ctx, method, path, in, out)
		if err == nil {
			return nil
		}
		var fatal *fatalError
		var refused *refusedError
		switch {
		case errors.As(err, &fatal):
			return err
		case errors.As(err, &refused) && refused.final():
			return err
		case errors.As(err, &refused):
			if firstRefusal.IsZero() {
				firstRefusal = time.Now()
			}
			if time.Since(firstRefusal) > refusalGrace {
				return err
			}
			wait = retryFirst
		default:
			klog.InfoS("Waiting for the server", "server", c.server.Host, "err", err, "retryIn", wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// refusedError is an answer from the server that says no.
type refusedError struct {
	status int
	msg    string
}

func (e *refusedError) Error() string { return e.msg }

// final tells a refusal waiting cannot change: a bad request or a node name
// in use. 401 and 403 may be a token or grant not yet visible.
func (e *refusedError) final() bool {
	return e.status == http.StatusConflict || e.status == http.StatusBadRequest
}

func (c *joinClient) once(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server.JoinPath(path).String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token.Bearer())
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	msg := strings.TrimSpace(string(data))
	switch {
	case resp.StatusCode == http.StatusOK:
		return json.Unmarshal(data, out)
	case resp.StatusCode == http.StatusUnauthorized:
		return &refusedError{resp.StatusCode, "the server refused the token (401 Unauthorized): use the token from the server's <data-dir>/server/agent-token (a server: <data-dir>/server/token), or one made with `skiff token create`"}
	case resp.StatusCode == http.StatusForbidden:
		return &refusedError{resp.StatusCode, "the token may not join (403 Forbidden): " + msg}
	case resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusBadRequest:
		return &refusedError{resp.StatusCode, msg}
	case resp.StatusCode == http.StatusNotFound:
		return &fatalError{fmt.Errorf("%s has no join API (404 at %s): is it a skiff server, and its apiserver URL?", c.server.Host, path)}
	default:
		return fmt.Errorf("%s answered %s: %s", c.server.Host, resp.Status, msg)
	}
}
