package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/supervisor"
)

// joinCluster makes this server one of the cluster of cfg.JoinServer: it
// fetches the secrets every server shares (the CAs, the service-account
// key, the agent token) once, and, for an embedded etcd member without
// data yet, its membership. A server that has both already starts as it
// is, whether or not the server it first joined still runs.
func (s *Server) joinCluster(ctx context.Context) error {
	_, err := os.Stat(s.tls.Cert(pki.ServerCA))
	needFiles := errors.Is(err, os.ErrNotExist)
	needMember := s.etcd != nil && !datastore.HasData(s.etcd.DataDir)
	if s.cfg.JoinServer == "" || !needFiles && !needMember {
		return nil
	}
	token, err := supervisor.ParseToken(s.cfg.Token)
	if err != nil {
		return fmt.Errorf("--token: %w", err)
	}
	req := supervisor.ServerRequest{
		ClusterCIDR: s.cfg.ClusterCIDR.String(), ServiceCIDR: s.cfg.ServiceCIDR.String(), ClusterDomain: s.cfg.ClusterDomain,
		SecretsEncryption: s.cfg.SecretsEncryption,
	}
	if s.etcd != nil {
		req.Name, req.EtcdPeerURL = s.etcd.Name, s.etcd.PeerURL()
	}
	resp, err := supervisor.JoinServer(ctx, supervisor.ServerJoinOptions{Server: s.cfg.JoinServer, Token: token, Request: req})
	if err != nil {
		return fmt.Errorf("joining the cluster of %s: %w", s.cfg.JoinServer, err)
	}
	for name, content := range resp.Files {
		path := filepath.Join(string(s.tls), filepath.Clean("/" + name)[1:])
		if old, err := os.ReadFile(path); err == nil && string(old) != content {
			return fmt.Errorf("%s differs from the cluster's: this data dir belongs to another cluster; give the server a new --data-dir to join %s", path, s.cfg.JoinServer)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			mode = 0o600
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := pki.WriteFileIfChanged(path, []byte(content), mode); err != nil {
			return fmt.Errorf("writing the cluster's %s: %w", name, err)
		}
	}
	if err := s.takeEncryptionConfig(resp.EncryptionConfig); err != nil {
		return err
	}
	s.joinedAgentToken = resp.AgentToken
	if s.etcd != nil {
		s.etcd.InitialCluster, s.etcdPeers = resp.EtcdInitialCluster, resp.EtcdClientURLs
	}
	return nil
}

// takeEncryptionConfig writes the cluster's encryption configuration (the
// join API has checked both sides agree on encryption): the servers must
// read each other's Secrets.
func (s *Server) takeEncryptionConfig(cluster string) error {
	if cluster == "" {
		return nil
	}
	if err := os.MkdirAll(s.cfg.CredDir(), 0o700); err != nil {
		return err
	}
	return pki.WriteFileIfChanged(s.cfg.EncryptionConfigFile(), []byte(cluster), 0o600)
}
