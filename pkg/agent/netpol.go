package agent

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/cloudnativelabs/kube-router/v2/pkg/svcip"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/pkg/config"
)

// nodePortRange is the apiserver's default NodePort range, in
// kube-router's notation; its rules let NodePort traffic through to the
// policies of the pods behind it.
const nodePortRange = "30000:32767"

// errNoIPSet says what to do when the host lacks the ipset command.
var errNoIPSet = errors.New("NetworkPolicy enforcement needs the ipset command, which is not in PATH: install it (apt-get install ipset, or your distribution's ipset package), or start the server with --disable-network-policy")

// runNetworkPolicy enforces NetworkPolicies on this node's pods with
// kube-router's network policy controller, the one k3s embeds: iptables
// chains in the filter table and ipsets of pod addresses, synced on every
// change of a pod, namespace or policy. It runs as the pod network's user,
// which reads those cluster-wide.
// checkNetworkPolicy fails the node's start, before anything runs, on a
// host that cannot enforce policies.
func (n *node) checkNetworkPolicy() error {
	if n.cfg.DisableNetworkPolicy {
		return nil
	}
	if _, err := exec.LookPath("ipset"); err != nil {
		return errNoIPSet
	}
	return nil
}

func (n *node) runNetworkPolicy(ctx context.Context) error {
	if n.cfg.DisableNetworkPolicy {
		klog.InfoS("Not enforcing NetworkPolicies (--disable-network-policy)")
		// Rules an earlier start left would still drop traffic.
		if _, err := exec.LookPath("ipset"); err == nil {
			(&netpol.NetworkPolicyController{}).Cleanup()
		}
		<-ctx.Done()
		return nil
	}
	client, err := kubeclient.New(n.cfg.FlannelKubeconfig(), "skiff-network-policy")
	if err != nil {
		return err
	}
	// kube-router reads this node's addresses from its Node, which the
	// kubelet registers in its first second or so.
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Nodes().Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
		return err == nil || !apierrors.IsNotFound(err), nil
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	return runPolicyController(ctx, client, networkPolicyConfig(n.cfg))
}

// networkPolicyConfig is kube-router's configuration for this node: its
// firewall only (skiff's pod network and kube-proxy do the rest).
func networkPolicyConfig(cfg *config.Agent) *options.KubeRouterConfig {
	kr := options.NewKubeRouterConfig()
	kr.RunFirewall, kr.RunRouter, kr.RunServiceProxy, kr.RunLoadBalancer = true, false, false, false
	kr.EnableIPv4, kr.EnableIPv6 = cfg.ServiceCIDR.IP.To4() != nil, cfg.ServiceCIDR.IP.To4() == nil
	kr.ClusterIPCIDRs = []string{cfg.ServiceCIDR.String()}
	kr.NodePortRange = nodePortRange
	kr.HostnameOverride = cfg.NodeName
	kr.MetricsEnabled = false
	return kr
}

func runPolicyController(ctx context.Context, client kubernetes.Interface, kr *options.KubeRouterConfig) error {
	ranges, err := svcip.NewValidator(svcip.Config{ClusterIPCIDRs: kr.ClusterIPCIDRs, EnableIPv4: kr.EnableIPv4, EnableIPv6: kr.EnableIPv6})
	if err != nil {
		return fmt.Errorf("network policy: %w", err)
	}
	iptables, ipsets, err := netpol.NewIPTablesHandlers(kr)
	if err != nil {
		return fmt.Errorf("network policy: %w", err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods().Informer()
	namespaces := factory.Core().V1().Namespaces().Informer()
	policies := factory.Networking().V1().NetworkPolicies().Informer()
	npc, err := netpol.NewNetworkPolicyController(client, kr, pods, policies, namespaces, &sync.Mutex{}, nil, iptables, ipsets, ranges)
	if err != nil {
		return fmt.Errorf("network policy: %w", err)
	}
	if _, err := pods.AddEventHandler(npc.PodEventHandler); err != nil {
		return err
	}
	if _, err := namespaces.AddEventHandler(npc.NamespaceEventHandler); err != nil {
		return err
	}
	if _, err := policies.AddEventHandler(npc.NetworkPolicyEventHandler); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	factory.WaitForCacheSync(ctx.Done())

	// The controller reports each sync on this channel and blocks until it
	// is read; skiff has no health server to give it to.
	heartbeats := make(chan *healthcheck.ControllerHeartbeat)
	go func() {
		for {
			select {
			case <-heartbeats:
			case <-ctx.Done():
				return
			}
		}
	}()
	klog.InfoS("Running the network policy controller", "node", kr.HostnameOverride, "serviceCIDRs", kr.ClusterIPCIDRs, "nodePorts", kr.NodePortRange, "syncPeriod", kr.IPTablesSyncPeriod)
	var wg sync.WaitGroup
	wg.Add(1)
	go npc.Run(heartbeats, ctx.Done(), &wg)
	wg.Wait()
	return nil
}
