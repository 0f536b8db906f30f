package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestNotifyReadySendsOneDatagram(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	Ready("") // no service manager: nothing to do, nothing sent
	Ready(path)
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("got %q, %v; want READY=1", buf[:n], err)
	}
}
