package e2e

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/tests/harness"
)

// startDaemon starts a datastore a test runs beside the server: its output
// goes to logPath (printed if the test fails), it dies with the test binary,
// and when the test ends it gets stop, then SIGKILL after 20 seconds.
func startDaemon(t *testing.T, cmd *exec.Cmd, logPath string, stop syscall.Signal) {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stop)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s:\n%s", logPath, tail(string(out), 50))
			}
		}
	})
}

func waitForPort(t *testing.T, addr string) {
	t.Helper()
	if err := harness.WaitForPort(addr, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}
