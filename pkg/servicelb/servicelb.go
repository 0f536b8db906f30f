// Package servicelb gives LoadBalancer Services an address without a cloud:
// the InternalIPs of the cluster's Ready nodes, where kube-proxy already
// accepts the Service's port (the k3s ServiceLB idea, without its per-port
// pods: kube-proxy's rules for load-balancer addresses do the forwarding).
package servicelb

import (
	"context"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/simnode"
)

// resync reconciles every Service this often besides on changes.
const resync = 5 * time.Minute

// Run keeps the status of every LoadBalancer Service (of no
// loadBalancerClass) pointing at the Ready nodes until ctx ends.
func Run(ctx context.Context, client kubernetes.Interface) error {
	factory := informers.NewSharedInformerFactory(client, resync)
	services := factory.Core().V1().Services()
	nodes := factory.Core().V1().Nodes()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke}
	if _, err := services.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	if _, err := nodes.Informer().AddEventHandler(handler); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	factory.WaitForCacheSync(ctx.Done())
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		all, err := nodes.Lister().List(labels.Everything())
		if err != nil {
			return err
		}
		ingress := Ingress(all)
		svcs, err := services.Lister().List(labels.Everything())
		if err != nil {
			return err
		}
		for _, svc := range svcs {
			if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.LoadBalancerClass != nil ||
				apiequality.Semantic.DeepEqual(svc.Status.LoadBalancer.Ingress, ingress) {
				continue
			}
			update := svc.DeepCopy()
			update.Status.LoadBalancer.Ingress = ingress
			if _, err := client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, update, metav1.UpdateOptions{}); err != nil {
				klog.InfoS("Updating a LoadBalancer Service's address", "service", klog.KObj(svc), "err", err)
				poke(nil) // try again
				continue
			}
			klog.InfoS("LoadBalancer Service addressed", "service", klog.KObj(svc), "ingress", ingress)
		}
	}
}

// Ingress is the load-balancer status of the Ready nodes' InternalIPs, in
// a stable order. Simulated nodes do not count: nothing listens at their
// addresses.
func Ingress(nodes []*corev1.Node) []corev1.LoadBalancerIngress {
	ipMode := corev1.LoadBalancerIPModeVIP
	var ingress []corev1.LoadBalancerIngress
	for _, n := range nodes {
		if !ready(n) || n.Labels[simnode.LabelSimulated] == "true" {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ingress = append(ingress, corev1.LoadBalancerIngress{IP: a.Address, IPMode: &ipMode})
			}
		}
	}
	slices.SortFunc(ingress, func(a, b corev1.LoadBalancerIngress) int { return strings.Compare(a.IP, b.IP) })
	return ingress
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
