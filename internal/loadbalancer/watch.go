package loadbalancer

import (
	"context"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// WatchServers keeps lb's list in step with the cluster's apiservers until
// ctx ends. Every apiserver's lease-based endpoint reconciler keeps the
// advertise address of each live apiserver in the Endpoints object
// "kubernetes" of namespace "default", port "https"; WatchServers sets lb's
// servers to address:port of each ready address there, followed by fallback
// (the servers given on the command line), so that the agent can always get
// back to where it started even if the advertised addresses are unreachable
// from this node. It uses an informer so that it re-lists and re-watches on
// its own after errors, such as the connection it watches through being
// closed by lb itself.
//
// client needs list and watch on endpoints in "default" (the node-proxier
// role has them; the kubelet's system:node role only has get).
func WatchServers(ctx context.Context, client kubernetes.Interface, lb *LoadBalancer, fallback []string) {
	// Endpoints, not EndpointSlices, although the former are deprecated:
	// the reconciler writes the Endpoints object first and mirrors it into
	// a slice, so it is the source, and it is one object of a known name.
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(metav1.NamespaceDefault),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", "kubernetes").String()
		}))
	informer := factory.Core().V1().Endpoints().Informer()
	update := func(obj any) {
		// The name check is belt and braces: the field selector already
		// asks the apiserver for this object only.
		ep, ok := obj.(*corev1.Endpoints)
		if !ok || ep.Name != "kubernetes" {
			return
		}
		// With no ready address this is the fallback alone, which is
		// where the agent started from.
		lb.SetServers(append(endpointServers(ep), fallback...))
	}
	// Deletion is ignored: the apiservers recreate the object within their
	// reconcile interval, and dropping to the fallback servers meanwhile
	// would close every connection to the others for nothing.
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, obj any) { update(obj) },
	}); err != nil {
		// Only possible once the informer has stopped, which it has not.
		klog.ErrorS(err, "Could not watch the apiserver endpoints")
		return
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	// Shutdown waits for the informer's goroutines, so none outlives us.
	factory.Shutdown()
}

// endpointServers is host:port of every ready address of the "https" port
// (or of the only port, whatever its name) of ep.
func endpointServers(ep *corev1.Endpoints) []string {
	var servers []string
	for _, subset := range ep.Subsets {
		port := int32(0)
		for _, p := range subset.Ports {
			if p.Name == "https" || len(subset.Ports) == 1 {
				port = p.Port
				break
			}
		}
		if port == 0 {
			continue
		}
		for _, a := range subset.Addresses {
			servers = append(servers, net.JoinHostPort(a.IP, strconv.Itoa(int(port))))
		}
	}
	return servers
}
