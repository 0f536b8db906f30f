package supervisor

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
	capi "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pkiutil"
	"k8s.io/kubernetes/pkg/controller/certificates/authority"

	"github.com/skiff-dev/skiff/pkg/pki"
)

// Handler serves the join API. The apiserver in front of it has already
// authenticated and authorized every request.
type Handler struct {
	config   AgentConfig
	serverCA *authority.CertificateAuthority
	clientCA *authority.CertificateAuthority
	// apiserverIPs may not appear in a remote node's serving certificate,
	// which the server CA signs too: a node must not pose as the apiserver.
	apiserverIPs []net.IP
	client       kubernetes.Interface
	limiter      *rate.Limiter
	servers      ServerSide
}

// NewHandler serves config to joining nodes and signs their certificates
// with the CAs in tlsDir; client reads and writes the node passwords.
// servers says how more servers join.
func NewHandler(config AgentConfig, tlsDir pki.Dir, apiserverIPs []net.IP, client kubernetes.Interface, servers ServerSide) (*Handler, error) {
	config.APIVersion, config.Kind = APIVersion, "AgentConfig"
	h := &Handler{
		config: config, apiserverIPs: apiserverIPs, client: client, servers: servers,
		// Joins are rare; a burst of a few dozen nodes is served, a flood
		// waits.
		limiter: rate.NewLimiter(20, 50),
	}
	var err error
	if h.serverCA, err = loadCA(tlsDir, pki.ServerCA); err != nil {
		return nil, err
	}
	if h.clientCA, err = loadCA(tlsDir, pki.ClientCA); err != nil {
		return nil, err
	}
	return h, nil
}

func loadCA(dir pki.Dir, name string) (*authority.CertificateAuthority, error) {
	cert, key, err := pkiutil.TryLoadCertAndKeyFromDisk(string(dir), name)
	if err != nil {
		return nil, fmt.Errorf("loading CA %s for the join API: %w", name, err)
	}
	return &authority.CertificateAuthority{Certificate: cert, PrivateKey: key}, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.limiter.Allow() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many join requests; try again", http.StatusTooManyRequests)
		return
	}
	switch {
	case r.URL.Path == PathConfig && r.Method == http.MethodGet:
		writeJSON(w, h.config)
	case r.URL.Path == PathNode && r.Method == http.MethodPost:
		h.serveNode(w, r)
	case r.URL.Path == PathServer && r.Method == http.MethodPost:
		h.serveServer(w, r)
	default:
		http.NotFound(w, r)
	}
}

// joinError is a refusal the node is told about, with its HTTP status.
type joinError struct {
	status int
	msg    string
}

func (e *joinError) Error() string { return e.msg }

func refuse(status int, format string, args ...any) error {
	return &joinError{status, fmt.Sprintf(format, args...)}
}

func (h *Handler) serveNode(w http.ResponseWriter, r *http.Request) {
	var req NodeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "malformed node request: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := h.node(r.Context(), &req, remoteIP(r))
	user := "unknown"
	if u, ok := request.UserFrom(r.Context()); ok {
		user = u.GetName()
	}
	var je *joinError
	switch {
	case errors.As(err, &je):
		klog.InfoS("Refused a node", "node", req.NodeName, "user", user, "reason", je.msg)
		http.Error(w, je.msg, je.status)
	case err != nil:
		klog.ErrorS(err, "Serving a node's certificates", "node", req.NodeName, "user", user)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		klog.InfoS("Issued a node's certificates", "node", req.NodeName, "user", user, "from", remoteIP(r))
		writeJSON(w, resp)
	}
}

// node checks a node's name and password and signs its certificates.
func (h *Handler) node(ctx context.Context, req *NodeRequest, from net.IP) (*NodeResponse, error) {
	if msgs := validateNodeName(req.NodeName); msgs != "" {
		return nil, refuse(http.StatusBadRequest, "invalid node name %q: %s", req.NodeName, msgs)
	}
	if len(req.NodePassword) < 16 {
		return nil, refuse(http.StatusBadRequest, "the node password is missing or too short")
	}
	if err := h.checkNodePassword(ctx, req.NodeName, req.NodePassword); err != nil {
		return nil, err
	}
	resp := &NodeResponse{
		APIVersion: APIVersion, Kind: "NodeResponse", Certificates: map[string]string{},
		ServerCA: string(pkiutil.EncodeCertPEM(h.serverCA.Certificate)),
		ClientCA: string(pkiutil.EncodeCertPEM(h.clientCA.Certificate)),
	}
	client := []capi.KeyUsage{capi.UsageDigitalSignature, capi.UsageKeyEncipherment, capi.UsageClientAuth}
	for purpose, csrPEM := range req.CSRs {
		var ca *authority.CertificateAuthority
		var check func(*x509.CertificateRequest) error
		usages := client
		switch purpose {
		case CertKubeletClient:
			ca, check = h.clientCA, identity("system:node:"+req.NodeName, "system:nodes")
		case CertKubeProxy:
			ca, check = h.clientCA, identity("system:kube-proxy")
		case CertLocalPath:
			ca, check = h.clientCA, identity(pki.LocalPathUser)
		case CertFlannel:
			ca, check = h.clientCA, identity(pki.FlannelUser)
		case CertKubeletServing:
			ca, check = h.serverCA, h.servingNames(req.NodeName, from)
			usages = []capi.KeyUsage{capi.UsageDigitalSignature, capi.UsageKeyEncipherment, capi.UsageServerAuth}
		default:
			return nil, refuse(http.StatusBadRequest, "unknown certificate %q", purpose)
		}
		cert, err := sign(ca, csrPEM, check, usages)
		if err != nil {
			return nil, refuse(http.StatusBadRequest, "%s certificate request: %v", purpose, err)
		}
		resp.Certificates[purpose] = cert
	}
	return resp, nil
}

// sign checks a certificate request against the identity the server
// decided and signs it with the upstream CSR signer's CA code.
func sign(ca *authority.CertificateAuthority, csrPEM string, check func(*x509.CertificateRequest) error, usages []capi.KeyUsage) (string, error) {
	block, _ := pem.Decode([]byte(csrPEM))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return "", errors.New("not a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", err
	}
	if err := check(csr); err != nil {
		return "", err
	}
	der, err := ca.Sign(block.Bytes, authority.PermissiveSigningPolicy{
		TTL: pki.LeafValidity, Usages: usages, Backdate: 5 * time.Minute, Short: 8 * time.Hour,
	})
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), nil
}

// identity accepts a client certificate request for exactly cn and orgs,
// with no names or addresses.
func identity(cn string, orgs ...string) func(*x509.CertificateRequest) error {
	return func(csr *x509.CertificateRequest) error {
		if csr.Subject.CommonName != cn || !slices.Equal(csr.Subject.Organization, orgs) {
			return fmt.Errorf("asks for %q in %v, want %q in %v", csr.Subject.CommonName, csr.Subject.Organization, cn, orgs)
		}
		if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.URIs)+len(csr.EmailAddresses) > 0 {
			return errors.New("a client certificate carries no names")
		}
		return nil
	}
}

// servingNames accepts a kubelet serving certificate request for the node:
// its name, localhost, and addresses; a node that is not on this host may
// not name the apiserver's addresses (loopback is every node's own).
func (h *Handler) servingNames(node string, from net.IP) func(*x509.CertificateRequest) error {
	return func(csr *x509.CertificateRequest) error {
		if csr.Subject.CommonName != node || len(csr.Subject.Organization) > 0 {
			return fmt.Errorf("asks for %q, want %q", csr.Subject.CommonName, node)
		}
		for _, name := range csr.DNSNames {
			if name != node && name != "localhost" {
				return fmt.Errorf("asks for the name %q", name)
			}
		}
		if len(csr.URIs)+len(csr.EmailAddresses) > 0 {
			return errors.New("asks for URIs or e-mail addresses")
		}
		if from.IsLoopback() {
			return nil // the server's own node
		}
		for _, ip := range csr.IPAddresses {
			if !ip.IsLoopback() && slices.ContainsFunc(h.apiserverIPs, ip.Equal) {
				return fmt.Errorf("asks for the address %s, which is the apiserver's", ip)
			}
		}
		return nil
	}
}

// nodePasswordSecret names the Secret holding a node's password hash.
func nodePasswordSecret(node string) string { return node + ".node-password.skiff" }

// checkNodePassword accepts the node when its name is new, when the
// password matches the one it first joined with, or when the Node that had
// the name is gone; another node claiming a name in use is refused.
func (h *Handler) checkNodePassword(ctx context.Context, node, password string) error {
	secrets := h.client.CoreV1().Secrets(metav1.NamespaceSystem)
	name := nodePasswordSecret(node)
	existing, err := secrets.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return h.storeNodePassword(ctx, nil, node, password)
	case err != nil:
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if bcrypt.CompareHashAndPassword(existing.Data["hash"], []byte(password)) == nil {
		return nil
	}
	if _, err := h.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		if err != nil {
			return fmt.Errorf("reading node %s: %w", node, err)
		}
		return refuse(http.StatusConflict, "node name %q is taken by another node with another password: give this node its own name (--node-name, or --with-node-id for a random suffix), or if the old node is gone for good, delete it first (kubectl delete node %s)", node, node)
	}
	// The Node that had the name was deleted: the name is free again.
	return h.storeNodePassword(ctx, existing, node, password)
}

func (h *Handler) storeNodePassword(ctx context.Context, existing *corev1.Secret, node, password string) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	secrets := h.client.CoreV1().Secrets(metav1.NamespaceSystem)
	if existing != nil {
		existing = existing.DeepCopy()
		existing.Data = map[string][]byte{"hash": hash}
		_, err = secrets.Update(ctx, existing, metav1.UpdateOptions{})
	} else {
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: nodePasswordSecret(node), Namespace: metav1.NamespaceSystem,
				Labels: map[string]string{"skiff.dev/node": node}},
			Type: "skiff.dev/node-password",
			Data: map[string][]byte{"hash": hash},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("storing node %s's password: %w", node, err)
	}
	return nil
}

func validateNodeName(name string) string {
	return strings.Join(validation.IsDNS1123Subdomain(name), "; ")
}

func remoteIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		klog.ErrorS(err, "Writing a join API response")
	}
}
