package server

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/pkg/config"
)

func TestListenSaysWhichFlagToChange(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	_, err = listen("apiserver", "--https-listen-port", "127.0.0.1", port)
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "--https-listen-port") {
		t.Errorf("got %v", err)
	}
	if err := checkFree("kube-scheduler", "--kube-scheduler-arg=secure-port=N", "127.0.0.1", 0); err != nil {
		t.Errorf("port 0 means no serving and is always free: %v", err)
	}
}

func TestLockDataDir(t *testing.T) {
	serverDir := filepath.Join(t.TempDir(), "data", "server")
	lock, err := LockDataDir(serverDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDataDir(serverDir); err == nil || !strings.Contains(err.Error(), "in use by another skiff server") {
		t.Errorf("second lock: %v", err)
	}
	lock.Close()
	again, err := LockDataDir(serverDir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Close()
	entries, _ := os.ReadDir(serverDir)
	if len(entries) != 1 || entries[0].Name() != ".lock" {
		t.Errorf("the write probe left files behind: %v", entries)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LockDataDir(filepath.Join(file, "server")); err == nil || !strings.Contains(err.Error(), "not usable") {
		t.Errorf("data dir under a file: %v", err)
	}
}

func TestAdvertiseAddress(t *testing.T) {
	if ip := advertiseAddress(&config.Server{AdvertiseAddress: "192.0.2.7", BindAddress: "0.0.0.0"}); ip.String() != "192.0.2.7" {
		t.Errorf("explicit advertise address: %s", ip)
	}
	// A specific bind address is what the apiserver advertises.
	if ip := advertiseAddress(&config.Server{BindAddress: "198.51.100.7"}); ip.String() != "198.51.100.7" {
		t.Errorf("advertise address for bind address 198.51.100.7: %s", ip)
	}
}
