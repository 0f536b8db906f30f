// Package sdnotify tells a service manager that started skiff with
// Type=notify (systemd) that skiff is ready.
//
// go-systemd's SdNotify reads $NOTIFY_SOCKET, which skiff clears at start
// (the in-process upstream apiserver and kubelet each say READY=1 as soon as
// they themselves start, long before the node is): the socket is kept aside
// and the datagram sent here, as sd_notify(3) describes it.
package sdnotify

import (
	"net"

	"k8s.io/klog/v2"
)

// Ready sends READY=1 to socket; an empty socket means no service manager
// asked. A failure is logged, not fatal: the cluster works, and the service
// manager's start timeout reports it.
func Ready(socket string) {
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
