package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/robfig/cron/v3"
	netutils "k8s.io/utils/net"

	"github.com/skiff-dev/skiff/manifests"
	"github.com/skiff-dev/skiff/pkg/datastore"
)

// FieldError names the setting (by its flag name, which is also its config
// file key) that holds a bad value, so the caller can say where it came from.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Reason)
}

// Validate checks every setting and returns the first bad one as a *FieldError.
// It touches nothing on disk.
func (s *Server) Validate() error {
	if s.DataDir == "" {
		return &FieldError{"data-dir", s.DataDir, "must not be empty"}
	}
	if s.HTTPSListenPort < 0 || s.HTTPSListenPort > 65535 {
		return &FieldError{"https-listen-port", fmt.Sprint(s.HTTPSListenPort), "must be between 1 and 65535, or 0 for any free port"}
	}
	if net.ParseIP(s.BindAddress) == nil {
		return &FieldError{"bind-address", s.BindAddress, "not an IP address"}
	}
	if s.AdvertiseAddress != "" && net.ParseIP(s.AdvertiseAddress) == nil {
		return &FieldError{"advertise-address", s.AdvertiseAddress, "not an IP address"}
	}
	for _, san := range s.TLSSANs {
		if san == "" || strings.ContainsAny(san, " /,") {
			return &FieldError{"tls-san", san, "must be a DNS name or an IP address"}
		}
	}
	if s.ClusterCIDR == nil || s.ServiceCIDR == nil {
		return &FieldError{"cluster-cidr", "", "cluster and service CIDRs must be set"}
	}
	if s.ClusterCIDR.Contains(s.ServiceCIDR.IP) || s.ServiceCIDR.Contains(s.ClusterCIDR.IP) {
		return &FieldError{"service-cidr", s.ServiceCIDR.String(), "overlaps the cluster CIDR " + s.ClusterCIDR.String()}
	}
	if !s.ServiceCIDR.Contains(s.ClusterDNS) {
		return &FieldError{"cluster-dns", s.ClusterDNS.String(), "must be inside the service CIDR " + s.ServiceCIDR.String()}
	}
	if s.ClusterDomain == "" || strings.ContainsAny(s.ClusterDomain, " /") {
		return &FieldError{"cluster-domain", s.ClusterDomain, "must be a DNS domain"}
	}
	if s.WriteKubeconfigMode&^0o777 != 0 {
		return &FieldError{"write-kubeconfig-mode", fmt.Sprintf("%o", s.WriteKubeconfigMode), "must be a file mode such as 0600"}
	}
	for _, name := range s.Disable {
		if !slices.Contains(Addons(), name) {
			return &FieldError{"disable", name, "not an add-on; known: " + strings.Join(Addons(), ", ")}
		}
	}
	if err := s.Node.Validate(); err != nil {
		return err
	}
	if !slices.Contains(FlannelBackends(), s.FlannelBackend) {
		return &FieldError{"flannel-backend", s.FlannelBackend, "must be one of " + strings.Join(FlannelBackends(), ", ")}
	}
	if s.Datastore.CompactInterval < 0 {
		return &FieldError{"datastore-compact-interval", s.Datastore.CompactInterval.String(), "cannot be negative"}
	}
	if err := datastore.CheckEndpoint(s.Datastore.Endpoint); err != nil {
		return &FieldError{"datastore-endpoint", datastore.Redact(s.Datastore.Endpoint), err.Error()}
	}
	if s.SnapshotSchedule != "" {
		if _, err := cron.ParseStandard(s.SnapshotSchedule); err != nil {
			return &FieldError{"snapshot-schedule-cron", s.SnapshotSchedule, "not a cron schedule such as \"0 */12 * * *\" or \"@every 6h\": " + err.Error()}
		}
		if s.SnapshotRetention < 1 {
			return &FieldError{"snapshot-retention", fmt.Sprint(s.SnapshotRetention), "must keep at least 1 snapshot"}
		}
	}
	if err := s.validateHA(); err != nil {
		return err
	}
	if err := s.SimulatedNodes.Validate(); err != nil {
		return &FieldError{"simulated-nodes", fmt.Sprint(s.SimulatedNodes.Count), err.Error()}
	}
	return checkArgs(map[string][]string{
		"kube-apiserver-arg":          s.ExtraAPIServerArgs,
		"kube-controller-manager-arg": s.ExtraControllerManagerArgs,
		"kube-scheduler-arg":          s.ExtraSchedulerArgs,
	})
}

// validateHA checks the settings of several servers: embedded etcd and
// joining a cluster.
func (s *Server) validateHA() error {
	if s.ClusterInit && s.Datastore.Endpoint != "" {
		return &FieldError{"cluster-init", "true", "--cluster-init makes embedded etcd the datastore; it cannot be combined with --datastore-endpoint " + datastore.Redact(s.Datastore.Endpoint)}
	}
	if s.ClusterInit && s.JoinServer != "" {
		return &FieldError{"cluster-init", "true", "--cluster-init starts a new cluster; a server joining one with --server " + s.JoinServer + " takes neither"}
	}
	if s.JoinServer != "" {
		if u, err := url.Parse(s.JoinServer); err != nil || u.Scheme != "https" || u.Host == "" {
			return &FieldError{"server", s.JoinServer, "not a URL such as https://192.0.2.10:6443"}
		}
		if s.Token == "" {
			return &FieldError{"token", "", "a server joining another with --server needs that cluster's server token: --token (or --token-file) with <data-dir>/server/token of the first server"}
		}
	}
	if s.ClusterResetRestorePath != "" && !s.EmbeddedEtcd() {
		return &FieldError{"cluster-reset-restore-path", s.ClusterResetRestorePath, "restores embedded etcd: give --cluster-init too (a SQLite snapshot is restored with skiff datastore snapshot restore)"}
	}
	for flag, port := range map[string]int{"etcd-client-port": s.EtcdClientPort, "etcd-peer-port": s.EtcdPeerPort, "etcd-metrics-port": s.EtcdMetricsPort} {
		if s.EmbeddedEtcd() && (port < 1 || port > 65535) {
			return &FieldError{flag, fmt.Sprint(port), "must be between 1 and 65535"}
		}
	}
	return nil
}

// checkArgs checks extra component arguments, by the flag that takes them.
func checkArgs(byFlag map[string][]string) error {
	for flag, args := range byFlag {
		for _, a := range args {
			if _, _, err := SplitArg(a); err != nil {
				return &FieldError{flag, a, err.Error()}
			}
		}
	}
	return nil
}

// ServiceLB is the built-in load-balancer controller's add-on name.
const ServiceLB = "servicelb"

// Addons are the names --disable accepts: the embedded manifests and the
// controllers built into the server.
func Addons() []string {
	return append(manifests.Names(), ServiceLB)
}

// ParseCIDR parses a CIDR for a flag, rejecting host bits so that a typo like
// 10.42.0.1/16 is caught rather than silently widened.
func ParseCIDR(flag, value string) (*net.IPNet, error) {
	ip, ipnet, err := netutils.ParseCIDRSloppy(value)
	if err != nil {
		return nil, &FieldError{flag, value, "not a CIDR such as 10.42.0.0/16"}
	}
	if !ip.Equal(ipnet.IP) {
		return nil, &FieldError{flag, value, "has host bits set; did you mean " + ipnet.String() + "?"}
	}
	return ipnet, nil
}

// DefaultClusterDNS is the tenth address of the service CIDR, as in k3s.
func DefaultClusterDNS(serviceCIDR *net.IPNet) (net.IP, error) {
	return netutils.GetIndexedIP(serviceCIDR, 10)
}

// APIServerServiceIP is the first address of the service CIDR: the ClusterIP
// of the `kubernetes` Service, which the serving certificate must name.
func (s *Server) APIServerServiceIP() (net.IP, error) {
	return netutils.GetIndexedIP(s.ServiceCIDR, 1)
}

// SplitArg splits an extra component argument given as `flag=value` (a
// leading `--` is allowed, as k3s allows it).
func SplitArg(arg string) (string, string, error) {
	key, value, ok := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	if !ok || key == "" {
		return "", "", fmt.Errorf("expected flag=value, for example audit-log-maxage=30")
	}
	return key, value, nil
}
