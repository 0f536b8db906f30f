package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/pkg/control"
)

// listen binds addr:port for a component, turning "address in use" into a
// message that names the flag to change.
func listen(what, flag, host string, port int) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("port %d for the %s is already in use by another program; stop it or choose another port with %s", port, what, flag)
		}
		return nil, fmt.Errorf("cannot listen on %s:%d for the %s: %w", host, port, what, err)
	}
	return ln, nil
}

// checkComponents fails when the controller-manager's or the scheduler's
// port is taken, or when any component's arguments do not parse.
func checkComponents(apiserverArgs, controllerArgs, schedulerArgs []string) error {
	for _, c := range []struct {
		what, flag string
		args       []string
	}{
		{"kube-controller-manager", "--kube-controller-manager-arg=secure-port=N", controllerArgs},
		{"kube-scheduler", "--kube-scheduler-arg=secure-port=N", schedulerArgs},
	} {
		port, _ := strconv.Atoi(control.ArgValue(c.args, "secure-port"))
		if err := checkFree(c.what, c.flag, control.ArgValue(c.args, "bind-address"), port); err != nil {
			return err
		}
	}
	return control.CheckArgs(apiserverArgs, controllerArgs, schedulerArgs)
}

// checkFree fails when a component's port is taken, without keeping it.
func checkFree(what, flag, host string, port int) error {
	if port == 0 {
		return nil // the component does not serve
	}
	ln, err := listen(what, flag, host, port)
	if err != nil {
		return err
	}
	return ln.Close()
}

// LockDataDir makes sure the server directory exists and is writable, and
// takes an exclusive lock on it so that a second server on the same data dir
// stops before it touches anything. The lock lives as long as the process.
func LockDataDir(serverDir string) (*os.File, error) {
	hint := "choose another --data-dir or fix its permissions"
	if err := os.MkdirAll(serverDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s is not usable: %w; %s", filepath.Dir(serverDir), err, hint)
	}
	f, err := os.OpenFile(filepath.Join(serverDir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s is not writable: %w; %s", filepath.Dir(serverDir), err, hint)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another skiff server; stop it first or choose another --data-dir", filepath.Dir(serverDir))
	}
	// Root ignores permission bits, so probe for a read-only or full file
	// system with a real write before any state is created.
	probe, err := os.CreateTemp(serverDir, ".probe-*")
	if err == nil {
		_, err = probe.Write([]byte("skiff"))
		if cerr := probe.Close(); err == nil {
			err = cerr
		}
		os.Remove(probe.Name())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is not writable: %w; %s", filepath.Dir(serverDir), err, hint)
	}
	return f, nil
}
