package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/pki"
)

// ServerSide is what the join API needs to let more servers join: where
// the shared secrets are, the agent token, and the datastore's kind and
// membership.
type ServerSide struct {
	TLS        pki.Dir
	AgentToken string
	// Datastore is one of the Datastore* kinds.
	Datastore string
	// EncryptionConfigFile is the apiserver's encryption configuration,
	// which every server must share (absent: Secrets are not encrypted).
	EncryptionConfigFile string
	// AddEtcdMember adds a learner for an embedded etcd datastore and
	// returns its initial cluster and the members' client URLs.
	AddEtcdMember func(ctx context.Context, name, peerURL string) (initialCluster string, clientURLs []string, err error)
}

// SharedFiles are the files of the TLS directory every server of a
// cluster must have the same: the CAs with their keys (each server issues
// its own leaf certificates from them) and the service-account key.
func SharedFiles() []string {
	var files []string
	for _, ca := range []string{pki.ClientCA, pki.ServerCA, pki.RequestHeaderCA} {
		files = append(files, ca+".crt", ca+".key")
	}
	files = append(files, pki.ServiceAccountKey+".key", pki.ServiceAccountKey+".pub")
	for _, ca := range pki.EtcdCAs() {
		files = append(files, filepath.Join("etcd", ca+".crt"), filepath.Join("etcd", ca+".key"))
	}
	return files
}

func (h *Handler) serveServer(w http.ResponseWriter, r *http.Request) {
	var req ServerRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "malformed server request: "+err.Error(), http.StatusBadRequest)
		return
	}
	u, _ := request.UserFrom(r.Context())
	if u == nil || !slices.Contains(u.GetGroups(), ServersGroup) && !slices.Contains(u.GetGroups(), "system:masters") {
		klog.InfoS("Refused a server: its token joins agents only", "name", req.Name, "from", remoteIP(r))
		http.Error(w, "this token joins agents only: a server joins with the server token, <data-dir>/server/token on the first server", http.StatusForbidden)
		return
	}
	resp, err := h.server(r.Context(), &req)
	var je *joinError
	switch {
	case errors.As(err, &je):
		klog.InfoS("Refused a server", "name", req.Name, "from", remoteIP(r), "reason", je.msg)
		http.Error(w, je.msg, je.status)
	case err != nil:
		klog.ErrorS(err, "Serving a joining server", "name", req.Name)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		klog.InfoS("A server joined", "name", req.Name, "from", remoteIP(r), "datastore", resp.Datastore)
		writeJSON(w, resp)
	}
}

func (h *Handler) server(ctx context.Context, req *ServerRequest) (*ServerResponse, error) {
	s := h.servers
	switch {
	case s.Datastore == DatastoreSQLite:
		return nil, refuse(http.StatusBadRequest, "this server keeps its data in SQLite, which one server alone can use: restart it with --cluster-init to move its data to embedded etcd, or give every server the same --datastore-endpoint")
	case s.Datastore == DatastoreEtcd && req.EtcdPeerURL == "":
		return nil, refuse(http.StatusBadRequest, "this cluster's datastore is embedded etcd: join it without --datastore-endpoint")
	case s.Datastore == DatastoreExternal && req.EtcdPeerURL != "":
		return nil, refuse(http.StatusBadRequest, "this cluster uses an external datastore: give the joining server the same --datastore-endpoint")
	}
	if msgs := validateNodeName(req.Name); req.EtcdPeerURL != "" && msgs != "" {
		return nil, refuse(http.StatusBadRequest, "invalid etcd member name %q: %s", req.Name, msgs)
	}
	for _, f := range []struct{ flag, theirs, ours string }{
		{"--cluster-cidr", req.ClusterCIDR, h.config.ClusterCIDR},
		{"--service-cidr", req.ServiceCIDR, h.config.ServiceCIDR},
		{"--cluster-domain", req.ClusterDomain, h.config.ClusterDomain},
	} {
		if f.theirs != f.ours {
			return nil, refuse(http.StatusBadRequest, "the cluster's %s is %s, the joining server's %s: every server needs the same", f.flag, f.ours, f.theirs)
		}
	}
	encryption, err := os.ReadFile(s.EncryptionConfigFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading the encryption configuration: %w", err)
	}
	if encrypted := len(encryption) > 0; encrypted != req.SecretsEncryption {
		return nil, refuse(http.StatusBadRequest, "the cluster's --secrets-encryption is %t, the joining server's %t: every server needs the same", encrypted, req.SecretsEncryption)
	}
	resp := &ServerResponse{
		APIVersion: APIVersion, Kind: "ServerResponse", Files: map[string]string{}, AgentToken: s.AgentToken, Datastore: s.Datastore,
		EncryptionConfig: string(encryption),
	}
	for _, name := range SharedFiles() {
		data, err := os.ReadFile(filepath.Join(string(s.TLS), name))
		if errors.Is(err, os.ErrNotExist) && strings.HasPrefix(name, "etcd"+string(filepath.Separator)) {
			continue // only a server with embedded etcd has its CAs
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		resp.Files[name] = string(data)
	}
	if s.Datastore == DatastoreEtcd {
		if resp.EtcdInitialCluster, resp.EtcdClientURLs, err = s.AddEtcdMember(ctx, req.Name, req.EtcdPeerURL); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// ServerJoinOptions say how a server joins.
type ServerJoinOptions struct {
	Server  string // an existing server's URL
	Token   Token  // the server token
	Request ServerRequest
}

// JoinServer asks an existing server for the cluster's shared secrets,
// waiting while it cannot be reached, failing at once on a refusal.
func JoinServer(ctx context.Context, o ServerJoinOptions) (*ServerResponse, error) {
	c, err := newJoinClient(JoinOptions{Server: o.Server, Token: o.Token})
	if err != nil {
		return nil, err
	}
	o.Request.APIVersion, o.Request.Kind = APIVersion, "ServerRequest"
	var resp ServerResponse
	if err := c.call(ctx, http.MethodPost, PathServer, o.Request, &resp); err != nil {
		return nil, err
	}
	if resp.APIVersion != APIVersion {
		return nil, fmt.Errorf("the server at %s speaks the join API %q, this skiff %q: run the same skiff version on both", o.Server, resp.APIVersion, APIVersion)
	}
	return &resp, nil
}
