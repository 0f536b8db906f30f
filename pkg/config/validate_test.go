package config

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/pkg/datastore"
)

func validServer(t *testing.T) *Server {
	t.Helper()
	cluster, err := ParseCIDR("cluster-cidr", DefaultClusterCIDR)
	if err != nil {
		t.Fatal(err)
	}
	service, err := ParseCIDR("service-cidr", DefaultServiceCIDR)
	if err != nil {
		t.Fatal(err)
	}
	dns, err := DefaultClusterDNS(service)
	if err != nil {
		t.Fatal(err)
	}
	return &Server{
		DataDir: DefaultDataDir, BindAddress: DefaultBindAddress, HTTPSListenPort: DefaultHTTPSListenPort,
		ClusterCIDR: cluster, ServiceCIDR: service, ClusterDNS: dns, ClusterDomain: DefaultClusterDomain,
		WriteKubeconfig: DefaultKubeconfig, WriteKubeconfigMode: DefaultKubeconfigMode, FlannelBackend: DefaultFlannelBackend,
		SnapshotSchedule: DefaultSnapshotSchedule, SnapshotRetention: DefaultSnapshotRetention, SecretsEncryption: true,
		EtcdClientPort: 2379, EtcdPeerPort: 2380, EtcdMetricsPort: 2381,
	}
}

func TestDefaultsAreValid(t *testing.T) {
	s := validServer(t)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.ClusterDNS.String() != "10.43.0.10" {
		t.Errorf("default cluster DNS %s, want 10.43.0.10 as in k3s", s.ClusterDNS)
	}
	if ip, _ := s.APIServerServiceIP(); ip.String() != "10.43.0.1" {
		t.Errorf("kubernetes service IP %s, want 10.43.0.1", ip)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		field  string
		mutate func(*Server)
	}{
		{"https-listen-port", func(s *Server) { s.HTTPSListenPort = 70000 }},
		{"bind-address", func(s *Server) { s.BindAddress = "localhost" }},
		{"advertise-address", func(s *Server) { s.AdvertiseAddress = "300.1.1.1" }},
		{"tls-san", func(s *Server) { s.TLSSANs = []string{"a b"} }},
		{"cluster-dns", func(s *Server) { s.ClusterDNS = net.ParseIP("10.44.0.10") }},
		{"service-cidr", func(s *Server) { s.ServiceCIDR = s.ClusterCIDR }},
		{"cluster-domain", func(s *Server) { s.ClusterDomain = "" }},
		{"write-kubeconfig-mode", func(s *Server) { s.WriteKubeconfigMode = 0o7777 }},
		{"datastore-endpoint", func(s *Server) { s.Datastore = datastore.Config{Endpoint: "nope"} }},
		{"datastore-compact-interval", func(s *Server) { s.Datastore.CompactInterval = -time.Second }},
		{"datastore-endpoint", func(s *Server) { s.Datastore = datastore.Config{Endpoint: "cassandra://x"} }},
		{"kube-apiserver-arg", func(s *Server) { s.ExtraAPIServerArgs = []string{"v"} }},
		{"kube-scheduler-arg", func(s *Server) { s.ExtraSchedulerArgs = []string{"=1"} }},
		{"snapshot-schedule-cron", func(s *Server) { s.SnapshotSchedule = "every day" }},
		{"snapshot-retention", func(s *Server) { s.SnapshotRetention = 0 }},
		{"cluster-init", func(s *Server) { s.ClusterInit, s.Datastore.Endpoint = true, "postgres://db/k8s" }},
		{"cluster-init", func(s *Server) { s.ClusterInit, s.JoinServer, s.Token = true, "https://192.0.2.10:6443", "t" }},
		{"server", func(s *Server) { s.JoinServer, s.Token = "http://192.0.2.10:6443", "t" }},
		{"token", func(s *Server) { s.JoinServer = "https://192.0.2.10:6443" }},
		{"etcd-peer-port", func(s *Server) { s.ClusterInit, s.EtcdPeerPort = true, 0 }},
		{"cluster-reset-restore-path", func(s *Server) { s.ClusterResetRestorePath = "/x.etcd" }},
		{"pprof-address", func(s *Server) { s.Node.PprofAddress = "0.0.0.0:6060" }},
		{"pprof-address", func(s *Server) { s.Node.PprofAddress = "127.0.0.1" }},
	} {
		s := validServer(t)
		tc.mutate(s)
		var fe *FieldError
		if err := s.Validate(); !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: got %v, want an error about %s", tc.field, err, tc.field)
		}
	}
}

func TestDatastoreEndpointsKineKnows(t *testing.T) {
	for _, ep := range []string{"", "sqlite:///var/lib/x.db", "memory://", "postgres://u:p@h/db", "mysql://u:p@tcp(h)/db", "https://etcd:2379", "nats://n:4222"} {
		s := validServer(t)
		s.Datastore.Endpoint = ep
		if err := s.Validate(); err != nil {
			t.Errorf("%q: %v", ep, err)
		}
	}
}

func TestParseCIDR(t *testing.T) {
	if _, err := ParseCIDR("cluster-cidr", "10.42.0.1/16"); err == nil || !strings.Contains(err.Error(), "did you mean 10.42.0.0/16") {
		t.Errorf("host bits: %v", err)
	}
	if _, err := ParseCIDR("cluster-cidr", "10.42.0.0"); err == nil {
		t.Error("an address without a prefix length was accepted")
	}
	if n, err := ParseCIDR("cluster-cidr", "fd00:42::/56"); err != nil || n.String() != "fd00:42::/56" {
		t.Errorf("IPv6: %v %v", n, err)
	}
}

func TestSplitArg(t *testing.T) {
	for in, want := range map[string][2]string{
		"audit-log-maxage=30":            {"audit-log-maxage", "30"},
		"--feature-gates=A=true,B=false": {"feature-gates", "A=true,B=false"},
		"event-ttl=":                     {"event-ttl", ""},
	} {
		k, v, err := SplitArg(in)
		if err != nil || k != want[0] || v != want[1] {
			t.Errorf("SplitArg(%q) = %q, %q, %v", in, k, v, err)
		}
	}
}
