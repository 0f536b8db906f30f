package server

import (
	"context"
	"regexp"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/datastore"
)

// removeMembersOfDeletedNodes takes a server out of the etcd cluster when
// its Node is deleted (as k3s does): `kubectl delete node` is how a user
// says a machine is gone for good. The member of this server itself is
// never removed here (another server removes it; `skiff etcd member
// remove` can too).
func (s *Server) removeMembersOfDeletedNodes(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(s.admin, 0)
	nodes := factory.Core().V1().Nodes().Informer()
	if _, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if node, ok := obj.(*corev1.Node); ok {
				if err := s.removeMemberOf(ctx, node.Name); err != nil {
					klog.ErrorS(err, "Removing the etcd member of a deleted node", "node", node.Name)
				}
			}
		},
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}

func (s *Server) removeMemberOf(ctx context.Context, node string) error {
	// Member names are <node name>-<8 hex digits> (see etcdMember).
	name := regexp.MustCompile("^" + regexp.QuoteMeta(node) + "-[0-9a-f]{8}$")
	client, err := datastore.EtcdClient([]string{s.etcd.LocalURL()}, s.tls.EtcdDir())
	if err != nil {
		return err
	}
	defer client.Close()
	removed, err := datastore.RemoveMembers(ctx, client, func(member string, _ uint64) bool {
		if member == s.etcd.Name && name.MatchString(member) {
			klog.InfoS("This server's own Node was deleted; its etcd member is left to the other servers", "member", member)
			return false
		}
		return name.MatchString(member)
	})
	if len(removed) > 0 {
		klog.InfoS("Removed the etcd member of a deleted node", "node", node, "members", removed)
	}
	return err
}
