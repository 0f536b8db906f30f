package datastore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/pki"
)

// Ports of the embedded etcd, as k3s has them.
const (
	DefaultEtcdClientPort  = 2379
	DefaultEtcdPeerPort    = 2380
	DefaultEtcdMetricsPort = 2381
)

// Etcd is one member of the servers' embedded etcd cluster.
type Etcd struct {
	// Name is the member's name, unique in the cluster.
	Name    string
	DataDir string
	// IP is the address the other members and servers reach it at.
	IP                                net.IP
	ClientPort, PeerPort, MetricsPort int
	// TLS holds its certificates (pki.EnsureEtcd).
	TLS pki.Dir
	// InitialCluster is name=peerURL,... of the cluster a new member
	// joins; empty: a new cluster of one (--cluster-init). A member whose
	// data dir exists ignores it.
	InitialCluster string
}

// ClientURL is where servers reach the member's client port.
func (e *Etcd) ClientURL() string { return httpsURL(e.IP, e.ClientPort) }

// PeerURL is where the other members reach it.
func (e *Etcd) PeerURL() string { return httpsURL(e.IP, e.PeerPort) }

// LocalURL is the client port on loopback, which the apiserver uses.
func (e *Etcd) LocalURL() string { return httpsURL(net.IPv4(127, 0, 0, 1), e.ClientPort) }

func httpsURL(ip net.IP, port int) string {
	return "https://" + net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// HasData reports whether dataDir holds an etcd member's data.
func HasData(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "member"))
	return err == nil
}

// StartEtcd starts the member in-process and returns, once it serves, how
// the apiserver reaches it. It stops when ctx ends (Backend.Wait awaits
// that). A member that cannot reach a quorum of its cluster keeps waiting
// and says so.
func StartEtcd(ctx context.Context, e *Etcd) (*Backend, error) {
	cfg, err := e.config()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(e.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the etcd data dir: %w", err)
	}
	klog.InfoS("Starting embedded etcd", "name", cfg.Name, "dataDir", cfg.Dir, "client", e.ClientURL(), "peer", e.PeerURL(),
		"initialCluster", cfg.InitialCluster, "state", cfg.ClusterState)
	member, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd in %s: %w", e.DataDir, err)
	}
	started := time.Now()
	for waiting := true; waiting; {
		select {
		case <-member.Server.ReadyNotify():
			waiting = false
		case err := <-member.Err():
			member.Close()
			return nil, fmt.Errorf("embedded etcd: %w", err)
		case <-ctx.Done():
			member.Close()
			return nil, ctx.Err()
		case <-time.After(15 * time.Second):
			klog.InfoS("Embedded etcd is waiting for a quorum of its members; start the other servers", "after", time.Since(started).Round(time.Second))
		}
	}
	klog.InfoS("Embedded etcd is ready", "name", cfg.Name, "after", time.Since(started).Round(time.Millisecond))
	wg := &sync.WaitGroup{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		member.Close()
	}()
	tls := e.TLS
	return &Backend{
		Endpoints: []string{e.LocalURL()},
		CAFile:    tls.Cert(pki.EtcdServerCA), CertFile: tls.Cert(pki.EtcdClient), KeyFile: tls.Key(pki.EtcdClient),
		LeaderElect: true, wg: wg,
	}, nil
}

func (e *Etcd) config() (*embed.Config, error) {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = e.Name, e.DataDir
	client, _ := url.Parse(e.ClientURL())
	local, _ := url.Parse(e.LocalURL())
	peer, _ := url.Parse(e.PeerURL())
	metrics, _ := url.Parse("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(e.MetricsPort)))
	cfg.ListenClientUrls = []url.URL{*client}
	if !e.IP.IsLoopback() {
		cfg.ListenClientUrls = append(cfg.ListenClientUrls, *local)
	}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.ListenMetricsUrls = []url.URL{*metrics}
	cfg.ClientTLSInfo = transport.TLSInfo{
		CertFile: e.TLS.Cert(pki.EtcdServing), KeyFile: e.TLS.Key(pki.EtcdServing),
		TrustedCAFile: e.TLS.Cert(pki.EtcdServerCA), ClientCertAuth: true,
	}
	cfg.PeerTLSInfo = transport.TLSInfo{
		CertFile: e.TLS.Cert(pki.EtcdPeer), KeyFile: e.TLS.Key(pki.EtcdPeer),
		TrustedCAFile: e.TLS.Cert(pki.EtcdPeerCA), ClientCertAuth: true,
	}
	cfg.InitialClusterToken = "skiff"
	if e.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(e.Name)
		cfg.ClusterState = embed.ClusterStateFlagNew
	} else {
		cfg.InitialCluster = e.InitialCluster
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	// The apiserver compacts every 5 minutes; etcd's own only bounds
	// what an idle cluster keeps.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", "1h"
	cfg.LogLevel = "warn"
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("embedded etcd configuration: %w", err)
	}
	return cfg, nil
}

// EtcdClient is a client of the embedded etcd at endpoints, with the
// servers' client certificate from tls (pki.Dir.EtcdDir).
func EtcdClient(endpoints []string, tls pki.Dir) (*clientv3.Client, error) {
	info := transport.TLSInfo{CertFile: tls.Cert(pki.EtcdClient), KeyFile: tls.Key(pki.EtcdClient), TrustedCAFile: tls.Cert(pki.EtcdServerCA)}
	tlsConfig, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate in %s: %w", tls, err)
	}
	return clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// AddMember adds a member at peerURL to the cluster as a learner (it does
// not count for the quorum until it has caught up and been promoted) and
// returns the initial cluster it starts with. A member at the same peer
// URL, an earlier attempt of the same server, is removed first.
func AddMember(ctx context.Context, client *clientv3.Client, name, peerURL string) (string, error) {
	list, err := client.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("listing etcd members: %w", err)
	}
	for _, m := range list.Members {
		if len(m.PeerURLs) > 0 && m.PeerURLs[0] == peerURL {
			klog.InfoS("Removing the etcd member of an earlier join from the same address", "member", m.Name, "id", fmt.Sprintf("%x", m.ID), "peer", peerURL)
			if _, err := client.MemberRemove(ctx, m.ID); err != nil {
				return "", fmt.Errorf("removing the old etcd member at %s: %w", peerURL, err)
			}
		}
	}
	added, err := client.MemberAddAsLearner(ctx, []string{peerURL})
	if err != nil {
		return "", fmt.Errorf("adding etcd member %s at %s: %w", name, peerURL, err)
	}
	klog.InfoS("Added an etcd learner", "name", name, "peer", peerURL)
	var cluster []string
	for _, m := range added.Members {
		n := m.Name
		if m.ID == added.Member.ID {
			n = name
		}
		if n == "" {
			continue // another member that has not started yet
		}
		for _, u := range m.PeerURLs {
			cluster = append(cluster, n+"="+u)
		}
	}
	return strings.Join(cluster, ","), nil
}

// Promote makes the learner name a voting member once it has caught up
// with the leader, retrying until then.
func Promote(ctx context.Context, client *clientv3.Client, name string) error {
	for {
		list, err := client.MemberList(ctx)
		if err == nil {
			err = errors.New("not a member")
			for _, m := range list.Members {
				if m.Name != name {
					continue
				}
				if !m.IsLearner {
					return nil
				}
				if _, err = client.MemberPromote(ctx, m.ID); err == nil {
					klog.InfoS("Promoted the etcd learner to a voting member", "name", name)
					return nil
				}
			}
		}
		klog.V(2).InfoS("etcd learner not promoted yet", "name", name, "reason", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("promoting etcd member %s: %w", name, err)
		case <-time.After(time.Second):
		}
	}
}

// RemoveMembers removes the members match picks, skipping any another
// server removed first, and returns the names of those it removed.
func RemoveMembers(ctx context.Context, client *clientv3.Client, match func(name string, id uint64) bool) ([]string, error) {
	list, err := client.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing etcd members: %w", err)
	}
	var removed []string
	for _, m := range list.Members {
		if !match(m.Name, m.ID) {
			continue
		}
		if _, err := client.MemberRemove(ctx, m.ID); errors.Is(err, rpctypes.ErrMemberNotFound) {
			continue
		} else if err != nil {
			return removed, fmt.Errorf("removing etcd member %s: %w", m.Name, err)
		}
		klog.InfoS("Removed an etcd member", "name", m.Name, "id", fmt.Sprintf("%x", m.ID))
		removed = append(removed, m.Name)
	}
	return removed, nil
}
