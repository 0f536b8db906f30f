package simnode

import (
	"context"
	"fmt"
	"net"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// nodeAddress gives simulated node i an address in 198.18.0.0/15, the range
// set aside for benchmarks: nothing ever sends to it.
func nodeAddress(i int) string {
	i++ // not the network address
	return net.IPv4(198, 18+byte(i>>16), byte(i>>8), byte(i)).String()
}

func (s *Simulator) node(i int) *corev1.Node {
	name := s.name(i)
	labels := map[string]string{
		"kubernetes.io/hostname": name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		LabelSimulated:           "true",
	}
	for k, v := range s.cfg.Labels {
		labels[k] = v
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    s.cfg.CPU,
		corev1.ResourceMemory: s.cfg.Memory,
		corev1.ResourcePods:   s.cfg.Pods,
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: s.cfg.Taints},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: nodeAddress(i)},
				{Type: corev1.NodeHostName, Address: name},
			},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:          s.cfg.Version,
				OperatingSystem:         "linux",
				Architecture:            "amd64",
				ContainerRuntimeVersion: "simulated://" + s.cfg.Version,
				OSImage:                 "skiff simulated node",
			},
		},
	}
}

// register creates the nodes that do not exist and reports every node's
// status as Ready.
func (s *Simulator) register(ctx context.Context) error {
	for i := range s.cfg.Count {
		want := s.node(i)
		_, err := s.client.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("registering simulated node %s: %w", want.Name, err)
		}
	}
	s.reportStatus(ctx)
	s.renewLeases(ctx)
	return nil
}

// reportStatus sets each node's status as a kubelet's status update does.
func (s *Simulator) reportStatus(ctx context.Context) {
	now := metav1.Now()
	for i := range s.cfg.Count {
		node, err := s.client.CoreV1().Nodes().Get(ctx, s.name(i), metav1.GetOptions{})
		if err != nil {
			klog.ErrorS(err, "Simulated node status", "node", s.name(i))
			continue
		}
		status := s.node(i).Status
		status.Conditions = conditions(node.Status.Conditions, now)
		node.Status = status
		if _, err := s.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Simulated node status", "node", node.Name)
		}
	}
}

// conditions reports a healthy node, keeping each transition time when the
// status does not change.
func conditions(old []corev1.NodeCondition, now metav1.Time) []corev1.NodeCondition {
	want := []struct {
		t      corev1.NodeConditionType
		status corev1.ConditionStatus
		reason string
	}{
		{corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"},
		{corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"},
		{corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"},
		{corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"},
	}
	var out []corev1.NodeCondition
	for _, w := range want {
		c := corev1.NodeCondition{Type: w.t, Status: w.status, Reason: w.reason, Message: "simulated by skiff", LastHeartbeatTime: now, LastTransitionTime: now}
		for _, o := range old {
			if o.Type == w.t && o.Status == w.status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		out = append(out, c)
	}
	return out
}

// renewLeases renews each node's lease in kube-node-lease, the heartbeat the
// node lifecycle controller watches.
func (s *Simulator) renewLeases(ctx context.Context) {
	leases := s.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	for i := range s.cfg.Count {
		name := s.name(i)
		lease, err := leases.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			node, nerr := s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if nerr != nil {
				continue
			}
			lease = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease,
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: node.UID}}},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
			}
			_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		case err == nil:
			lease.Spec.HolderIdentity, lease.Spec.RenewTime = ptr.To(name), &now
			_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		}
		if err != nil && ctx.Err() == nil {
			klog.V(2).InfoS("Simulated node lease", "node", name, "err", err)
		}
	}
}
