package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

const (
	dirPrefix = "skiff-testenv-"
	// ownerFile holds the pid of the test process an environment is for.
	ownerFile = "owner"
)

// Pooled makes Start and New hand out an environment started in the
// background beforehand, when one with the same options is ready, and
// start the next one at once, while the test runs. Each environment is
// still a test's own: used once, then stopped. The first Start of a test
// binary pays the full start (about 2 s here); the next ones about what
// installing their CRDs costs, as long as each test takes longer than a
// start. A spare left over when the test binary exits dies with it; call
// StopShared at the end of TestMain to stop it sooner.
func Pooled() Option { return func(s *settings) { s.pooled = true } }

// pool holds one spare environment per set of options.
var pool = &envPool{spares: map[string]*spare{}}

type envPool struct {
	mu     sync.Mutex
	spares map[string]*spare
}

// spare is an environment being started; ready closes when it has.
type spare struct {
	ready chan struct{}
	env   *Environment
	err   error
}

func (p *envPool) take(bin string, s *settings) (*Environment, error) {
	key := s.key(bin)
	p.mu.Lock()
	sp := p.spares[key]
	delete(p.spares, key)
	p.mu.Unlock()
	var env *Environment
	if sp != nil {
		<-sp.ready
		if sp.err == nil && sp.env.running() {
			env = sp.env
		} else if sp.env != nil {
			_ = sp.env.Stop()
		}
	}
	if env == nil {
		// No spare yet: start this one first, then the spare, rather
		// than both at once on the same cores.
		var err error
		if env, err = launch(bin, s); err != nil {
			return nil, err
		}
	}
	p.refill(key, bin, s)
	return env, nil
}

// refill starts the next spare for key unless one is on its way.
func (p *envPool) refill(key, bin string, s *settings) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.spares[key] != nil {
		return
	}
	sp := &spare{ready: make(chan struct{})}
	p.spares[key] = sp
	go func() {
		sp.env, sp.err = launch(bin, s)
		close(sp.ready)
	}()
}

// stop stops every spare, waiting for those still starting.
func (p *envPool) stop() error {
	p.mu.Lock()
	spares := p.spares
	p.spares = map[string]*spare{}
	p.mu.Unlock()
	var errs []error
	for _, sp := range spares {
		<-sp.ready
		if sp.env != nil {
			errs = append(errs, sp.env.Stop())
		}
	}
	return errors.Join(errs...)
}

// key identifies the environments that can stand in for one another: the
// same binary running with the same arguments, logging to the same writer.
func (s *settings) key(bin string) string {
	return fmt.Sprintf("%s %s %p", bin, strings.Join(s.serverArgs("", "", ""), " "), s.logs)
}

func (e *Environment) running() bool {
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

var removeAbandonedOnce sync.Once

// removeAbandoned removes, once per process, the directories of
// environments whose test process has gone without stopping them (a spare
// left over, a test binary killed): their servers died with it.
func removeAbandoned() {
	removeAbandonedOnce.Do(func() {
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
		for _, dir := range dirs {
			data, err := os.ReadFile(filepath.Join(dir, ownerFile))
			if err != nil {
				continue // not one of ours, or not written yet
			}
			pid, err := strconv.Atoi(string(data))
			if err != nil || pid == os.Getpid() {
				continue
			}
			if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
				os.RemoveAll(dir)
			}
		}
	})
}
