// Package profiling serves Go's runtime profiles (net/http/pprof) of the
// skiff process on a loopback address, for `--pprof-address`: every
// in-process component (apiserver, controller-manager, scheduler, kubelet,
// kube-proxy, the datastore) shares the one heap, so one endpoint covers
// them all. It is off unless asked for, and never on a non-loopback address:
// profiles show memory contents such as object names.
package profiling

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/lifecycle"
)

// Server binds addr now, so a taken port fails before anything is written,
// and returns the part that serves the profiles under /debug/pprof/.
func Server(addr string) (lifecycle.Component, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-address %s: %w; choose a free loopback port", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return lifecycle.Run("pprof", func(ctx context.Context) error {
		klog.InfoS("Serving Go profiles", "url", "http://"+l.Addr().String()+"/debug/pprof/")
		go func() {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
		}()
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		<-ctx.Done()
		return nil
	}), nil
}
