package harness

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is a skiff process the harness runs, its output appended to a
// log file, killed if the test process dies.
type process struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	exitErr error
}

// start runs cmd with this process's environment minus SKIFF_* (those are
// read as flags: only the command line configures a test's skiff), plus env.
func (p *process) start(cmd *exec.Cmd, logPath string, env ...string) error {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SKIFF_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	p.cmd, p.started, p.done = cmd, time.Now(), make(chan struct{})
	go func() {
		p.exitErr = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return nil
}

// StartedAt is when the process was last started.
func (p *process) StartedAt() time.Time { return p.started }

// Pid is the process id.
func (p *process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *process) Exited() (bool, error) {
	if p.done == nil {
		return false, nil
	}
	select {
	case <-p.done:
		return true, p.exitErr
	default:
		return false, nil
	}
}

// Wait waits up to timeout for the process to end by itself and returns
// how it ended.
func (p *process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(timeout):
		return fmt.Errorf("still running after %s", timeout)
	}
}

// Stop sends SIGTERM and waits up to timeout for the process to exit; it
// returns how long that took. On timeout the process is killed.
func (p *process) Stop(timeout time.Duration) (time.Duration, error) {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0, nil
	}
	start := time.Now()
	if exited, err := p.Exited(); exited {
		return 0, fmt.Errorf("already exited: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-p.done:
		return time.Since(start), p.exitErr
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return time.Since(start), fmt.Errorf("did not exit within %s of SIGTERM; killed", timeout)
	}
}

// Kill ends the process at once, for cleanup.
func (p *process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	if exited, _ := p.Exited(); !exited {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
