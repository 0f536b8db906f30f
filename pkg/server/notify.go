package server

import (
	"context"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// waitNodeReady waits until this server's own node reports Ready, or ctx
// ends (the runner ends it when a part fails). It has no deadline of its
// own: a service manager (systemd's start timeout) or install.sh decides how
// long is too long, and a slow node is still starting, not broken.
func waitNodeReady(ctx context.Context, client kubernetes.Interface, node string) error {
	return wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil // not registered yet, or a transient error
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

// notifyReady tells the service manager listening on socket (systemd's
// $NOTIFY_SOCKET, kept aside at start: see pkg/cli) that skiff is ready.
// go-systemd's SdNotify reads the variable, which skiff clears so that the
// in-process upstream components cannot say ready early; so the datagram
// is sent here, as sd_notify(3) describes it. A failure is logged, not
// fatal: the cluster works, and the service manager's start timeout
// reports it.
func notifyReady(socket string) {
	if socket == "" {
		return
	}
	// An address starting with @ is in the abstract namespace; Go's net
	// package maps it.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err == nil {
		_, err = conn.Write([]byte("READY=1"))
		conn.Close()
	}
	if err != nil {
		klog.ErrorS(err, "Could not tell the service manager skiff is ready", "socket", socket)
		return
	}
	klog.InfoS("Told the service manager skiff is ready", "socket", socket)
}
