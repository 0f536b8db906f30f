package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cliflag "k8s.io/component-base/cli/flag"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/kubernetes/cmd/kubelet/app"
	"k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/eviction"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/control"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// kubeletConfiguration is the node's KubeletConfiguration: secure serving
// (webhook authentication and authorization, no anonymous access, no
// read-only port), the cluster's DNS, and what these hosts need.
func kubeletConfiguration(cfg *config.Agent, cgroupDriver string) *kubeletv1beta1.KubeletConfiguration {
	tls := pki.Dir(cfg.TLSDir())
	return &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: tls.Cert(pki.ClientCA)},
		},
		Authorization:      kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		ReadOnlyPort:       0,
		TLSCertFile:        tls.Cert(pki.ServingKubelet),
		TLSPrivateKeyFile:  tls.Key(pki.ServingKubelet),
		HealthzBindAddress: "127.0.0.1",
		ClusterDNS:         []string{cfg.ClusterDNS.String()},
		ClusterDomain:      cfg.ClusterDomain,
		ResolverConfig:     ptr.To(resolvConf()),
		CgroupDriver:       cgroupDriver,
		// cgroup v1 is deprecated upstream but it is what many edge hosts
		// (and these machines) have; v2 hosts are unaffected.
		FailCgroupV1:             ptr.To(false),
		ContainerRuntimeEndpoint: "unix://" + cfg.ContainerdSocket(),
		SerializeImagePulls:      ptr.To(false),
		// The kubelet renews its node Lease every quarter of this: 20 s
		// instead of upstream's 10 s. The renewals are most of an idle
		// cluster's writes (make bench-footprint, "idle writes"), which
		// wear an edge board's SD card. The controller-manager marks a
		// node NotReady after node-monitor-grace-period (50 s), so one
		// whole missed renewal is still survived.
		NodeLeaseDurationSeconds: 80,
		// k3s's thresholds: the upstream defaults (10%/15% free) evict
		// everything on a big disk that is merely well used.
		EvictionHard: map[string]string{
			"imagefs.available": "5%",
			"nodefs.available":  "5%",
			"memory.available":  "100Mi",
		},
		EvictionMinimumReclaim: map[string]string{
			"imagefs.available": "10%",
			"nodefs.available":  "10%",
		},
	}
}

// resolvConf is the resolver configuration pods with dnsPolicy Default (and
// CoreDNS's upstream) use: the host's, unless it names only loopback
// resolvers (systemd-resolved's stub), which mean nothing inside a pod.
func resolvConf() string {
	const host, resolved = "/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"
	data, err := os.ReadFile(host)
	if err != nil || !onlyLoopbackNameservers(string(data)) {
		return host
	}
	if _, err := os.Stat(resolved); err == nil {
		return resolved
	}
	return host
}

func onlyLoopbackNameservers(conf string) bool {
	found := false
	for line := range strings.Lines(conf) {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		found = true
		if ip := net.ParseIP(fields[1]); ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return found
}

// kubeletArgs are the kubelet's command-line flags: the node-specific ones
// that are not part of KubeletConfiguration, then the user's --kubelet-arg.
func kubeletArgs(cfg *config.Agent, configFile string) []string {
	args := map[string]string{
		"config":            configFile,
		"kubeconfig":        cfg.KubeletKubeconfig(),
		"hostname-override": cfg.NodeName,
		"node-ip":           cfg.NodeIP.String(),
		"root-dir":          config.DefaultKubeletRoot,
		"cert-dir":          filepath.Join(cfg.AgentDir(), "kubelet-pki"),
	}
	if len(cfg.Node.Labels) > 0 {
		args["node-labels"] = strings.Join(cfg.Node.Labels, ",")
	}
	if len(cfg.Node.Taints) > 0 {
		args["register-with-taints"] = strings.Join(cfg.Node.Taints, ",")
	}
	return control.Args(args, cfg.Node.ExtraKubeletArgs)
}

func writeKubeletConfig(cfg *config.Agent, cgroupDriver string) (string, error) {
	data, err := yaml.Marshal(kubeletConfiguration(cfg, cgroupDriver))
	if err != nil {
		return "", err
	}
	path := filepath.Join(cfg.EtcDir(), "kubelet.yaml")
	return path, pki.WriteFileIfChanged(path, data, 0o600)
}

// kubeletServer parses the kubelet's arguments the way its own command does
// (flags, then the config file, then the flags again over the file, so flags
// win), without the command's process-wide signal handler.
func kubeletServer(ctx context.Context, args []string) (*options.KubeletServer, error) {
	flags := options.NewKubeletFlags()
	kc, err := options.NewKubeletConfiguration()
	if err != nil {
		return nil, err
	}
	if err := parseKubeletFlags(flags, kc, args); err != nil {
		return nil, err
	}
	if flags.KubeletConfigFile != "" {
		loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, flags.KubeletConfigFile)
		if err != nil {
			return nil, err
		}
		if kc, err = loader.Load(ctx); err != nil {
			return nil, fmt.Errorf("kubelet config file %s: %w", flags.KubeletConfigFile, err)
		}
		if kc.EvictionHard == nil {
			kc.EvictionHard = eviction.DefaultEvictionHard
		}
		if err := parseKubeletFlags(options.NewKubeletFlags(), kc, args); err != nil {
			return nil, err
		}
	}
	if err := options.ValidateKubeletFlags(flags); err != nil {
		return nil, fmt.Errorf("kubelet arguments: %w (check --kubelet-arg)", err)
	}
	return &options.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *kc}, nil
}

func parseKubeletFlags(flags *options.KubeletFlags, kc *kubeletconfig.KubeletConfiguration, args []string) error {
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	flags.AddFlags(fs)
	options.AddKubeletConfigFlags(fs, kc)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kubelet arguments: %w (check --kubelet-arg)", err)
	}
	return nil
}

// runKubelet runs the upstream kubelet until ctx ends. Feature gates are
// process-wide: the kubelet's are applied over the apiserver's.
func runKubelet(ctx context.Context, args []string) error {
	s, err := kubeletServer(ctx, args)
	if err != nil {
		return err
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(s.KubeletConfiguration.FeatureGates); err != nil {
		return fmt.Errorf("kubelet feature gates: %w", err)
	}
	if err := kubeletvalidation.ValidateKubeletConfiguration(&s.KubeletConfiguration, utilfeature.DefaultFeatureGate); err != nil {
		return fmt.Errorf("kubelet configuration: %w", err)
	}
	deps, err := app.UnsecuredDependencies(ctx, s, utilfeature.DefaultFeatureGate)
	if err != nil {
		return fmt.Errorf("kubelet dependencies: %w", err)
	}
	return app.Run(ctx, s, deps, utilfeature.DefaultFeatureGate)
}
