// Package loadbalancer is the node agent's client-side TCP load balancer for
// the apiservers, after k3s's agent load balancer.
//
// The kubelet, kube-proxy and flannel each talk to one apiserver URL. When the
// agent points them straight at the server it joined, that server's death cuts
// the node off although other servers are alive. Pointing them instead at a
// loopback listener that forwards each connection to whichever server answers
// keeps them connected; their TLS is end to end (the proxy only copies bytes),
// and the servers' certificates name 127.0.0.1 for that reason.
package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

const (
	// dialTimeout bounds one server's dial. A dead host (no RST) would
	// otherwise hold a client for the kernel's SYN retries, about two
	// minutes, before the next server is tried.
	dialTimeout = 2 * time.Second
	// keepAlive has the kernel probe idle forwarded connections (after 15 s,
	// then every 15 s), so an idle watch on a server that vanished without
	// a FIN or RST ends in a few minutes rather than never. A failed dial
	// to that server closes it sooner.
	keepAlive = 15 * time.Second
)

// LoadBalancer listens on a loopback address and forwards each TCP
// connection to one of the servers (host:port), preferring the one that
// answered last, trying the others in order when a dial fails.
type LoadBalancer struct {
	listener net.Listener
	dialer   net.Dialer
	// wg counts the goroutines handling accepted connections, for Serve to
	// wait on.
	wg sync.WaitGroup

	mu        sync.Mutex
	servers   []string
	preferred string
	// conns are the connections being forwarded, by backend server; those
	// still dialing are under "". Keyed by backend so that the connections
	// of a server that failed or was removed can be closed at once: their
	// clients then reconnect (through us, to a live server) instead of
	// waiting for TCP to time out a dead peer.
	conns map[string]map[*forward]struct{}
	// closed is set when Serve ends: connections accepted concurrently are
	// closed rather than tracked.
	closed bool
}

// forward is one client connection and, once dialed, its backend connection.
type forward struct {
	client net.Conn
	// backend is nil while dialing; it and addr, the key of the set f is
	// in, are set under LoadBalancer.mu.
	backend net.Conn
	addr    string
}

// close closes both sides, which ends both copy loops. Closing a net.Conn
// twice is harmless, so callers need not coordinate.
func (f *forward) close() {
	f.client.Close()
	if f.backend != nil {
		f.backend.Close()
	}
}

// New listens on listenAddr (e.g. "127.0.0.1:6444"; "127.0.0.1:0" picks a
// port) with the initial server list (host:port strings, at least one). The
// listener is closed by Serve.
func New(listenAddr string, servers []string) (*LoadBalancer, error) {
	list, invalid := normalize(servers)
	if len(invalid) > 0 {
		return nil, fmt.Errorf("invalid apiserver addresses %q: want host:port", invalid)
	}
	if len(list) == 0 {
		return nil, errors.New("no apiserver addresses")
	}
	l, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("load balancer: %w", err)
	}
	return &LoadBalancer{
		listener:  l,
		dialer:    net.Dialer{Timeout: dialTimeout, KeepAlive: keepAlive},
		servers:   list,
		preferred: list[0],
		conns:     map[string]map[*forward]struct{}{},
	}, nil
}

// Addr is the address clients use, host:port.
func (lb *LoadBalancer) Addr() string { return lb.listener.Addr().String() }

// URL is "https://" + Addr().
func (lb *LoadBalancer) URL() string { return "https://" + lb.Addr() }

// Serve accepts and forwards connections until ctx ends, then closes the
// listener and all forwarded connections and returns once every goroutine it
// started has ended. It returns nil when ctx ended, and the listener's error
// if the listener failed first. Call it once.
func (lb *LoadBalancer) Serve(ctx context.Context) error {
	// Closing the listener is what interrupts Accept.
	stop := context.AfterFunc(ctx, func() { lb.listener.Close() })
	defer stop()
	// Handlers dial under their own context so that their dials are
	// cancelled on the way out however the accept loop ended.
	hctx, cancelHandlers := context.WithCancel(ctx)
	defer cancelHandlers()

	var err error
	var backoff time.Duration
	for {
		var c net.Conn
		c, err = lb.listener.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			// Anything else (EMFILE, ECONNABORTED) is about one connection
			// or passes; back off like net/http rather than spin or give up
			// on every client.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			klog.ErrorS(err, "Load balancer accept failed", "retryIn", backoff)
			if !sleep(ctx, backoff) {
				break
			}
			continue
		}
		backoff = 0
		lb.wg.Add(1)
		go lb.handle(hctx, c)
	}
	lb.listener.Close()

	lb.mu.Lock()
	lb.closed = true
	var all []*forward
	for _, set := range lb.conns {
		for f := range set {
			all = append(all, f)
		}
	}
	lb.mu.Unlock()
	cancelHandlers()
	for _, f := range all {
		f.close()
	}
	// Each handler ends promptly: its copies fail on the closed
	// connections, and its dial, if any, was cancelled.
	lb.wg.Wait()

	if ctx.Err() != nil {
		return nil
	}
	return err
}

// SetServers replaces the server list, dropping duplicates (order kept) and
// entries that are not host:port. An empty result is ignored with a log line:
// the agent must never lose every server. The preferred server stays so if it
// is still listed, and connections to servers no longer listed are closed so
// that their clients come back through the new list.
func (lb *LoadBalancer) SetServers(servers []string) {
	list, invalid := normalize(servers)
	if len(invalid) > 0 {
		klog.InfoS("Ignoring invalid apiserver addresses", "addresses", invalid)
	}
	if len(list) == 0 {
		klog.InfoS("Ignoring empty apiserver list, keeping the current one", "servers", lb.Servers())
		return
	}

	lb.mu.Lock()
	if slices.Equal(list, lb.servers) {
		lb.mu.Unlock()
		return
	}
	lb.servers = list
	old := lb.preferred
	switched := !slices.Contains(list, old)
	if switched {
		lb.preferred = list[0]
	}
	var stale []*forward
	for addr, set := range lb.conns {
		if addr != "" && !slices.Contains(list, addr) {
			for f := range set {
				stale = append(stale, f)
			}
		}
	}
	lb.mu.Unlock()

	klog.InfoS("Updated apiserver list", "servers", list)
	if switched {
		klog.InfoS("Switched apiserver", "old", old, "new", list[0], "reason", "removed")
	}
	for _, f := range stale {
		f.close()
	}
}

// Servers returns the current list.
func (lb *LoadBalancer) Servers() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return slices.Clone(lb.servers)
}

// handle forwards one accepted client connection.
func (lb *LoadBalancer) handle(ctx context.Context, client net.Conn) {
	defer lb.wg.Done()
	f := &forward{client: client}
	if !lb.track(f) {
		client.Close()
		return
	}
	defer lb.untrack(f)

	backend, addr, err := lb.dial(ctx)
	if err != nil {
		if ctx.Err() == nil {
			klog.ErrorS(err, "No apiserver reachable, closing client connection", "client", client.RemoteAddr())
		}
		return
	}
	if !lb.attach(f, addr, backend) {
		backend.Close()
		return
	}
	pipe(f)
}

// dial connects to the preferred server, or failing that to the others in
// list order, and makes the one that answered preferred.
func (lb *LoadBalancer) dial(ctx context.Context) (net.Conn, string, error) {
	var tried []string
	for {
		// Pick afresh each time: SetServers or another connection may
		// have changed the list or the preferred server meanwhile.
		addr := lb.next(tried)
		if addr == "" {
			return nil, "", fmt.Errorf("dialing every apiserver failed: %q", tried)
		}
		tried = append(tried, addr)
		conn, err := lb.dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			lb.prefer(addr)
			return conn, addr, nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		klog.V(2).InfoS("Dialing apiserver failed", "server", addr, "err", err)
		// The server's other connections are most likely dead too (it
		// crashed, or its host is gone): close them so their clients
		// reconnect now, through us, to a live server.
		lb.closeBackend(addr)
	}
}

// next is the server to try next: the preferred one, then the others in
// order, skipping those tried; "" when none is left.
func (lb *LoadBalancer) next(tried []string) string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if !slices.Contains(tried, lb.preferred) {
		return lb.preferred
	}
	for _, s := range lb.servers {
		if !slices.Contains(tried, s) {
			return s
		}
	}
	return ""
}

// prefer makes addr the preferred server, logging a change.
func (lb *LoadBalancer) prefer(addr string) {
	lb.mu.Lock()
	old := lb.preferred
	// A server removed while we dialed it must not become preferred.
	if old == addr || !slices.Contains(lb.servers, addr) {
		lb.mu.Unlock()
		return
	}
	lb.preferred = addr
	lb.mu.Unlock()
	klog.InfoS("Switched apiserver", "old", old, "new", addr)
}

// track registers a client connection as dialing; false once Serve has
// ended.
func (lb *LoadBalancer) track(f *forward) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return false
	}
	lb.add("", f)
	return true
}

// attach moves f from dialing to addr's set; false, and f closed, if Serve
// ended or addr was removed from the list during the dial, since then
// nothing would close this connection to a server we no longer use.
func (lb *LoadBalancer) attach(f *forward, addr string, backend net.Conn) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed || !slices.Contains(lb.servers, addr) {
		return false
	}
	lb.remove(f)
	f.backend = backend
	lb.add(addr, f)
	return true
}

// add puts f in addr's set; lb.mu must be held.
func (lb *LoadBalancer) add(addr string, f *forward) {
	set := lb.conns[addr]
	if set == nil {
		set = map[*forward]struct{}{}
		lb.conns[addr] = set
	}
	set[f] = struct{}{}
	f.addr = addr
}

// remove takes f out of its set; lb.mu must be held.
func (lb *LoadBalancer) remove(f *forward) {
	delete(lb.conns[f.addr], f)
	if len(lb.conns[f.addr]) == 0 {
		delete(lb.conns, f.addr)
	}
}

// untrack forgets f and closes it.
func (lb *LoadBalancer) untrack(f *forward) {
	lb.mu.Lock()
	lb.remove(f)
	lb.mu.Unlock()
	f.close()
}

// closeBackend closes every connection forwarded to addr.
func (lb *LoadBalancer) closeBackend(addr string) {
	lb.mu.Lock()
	fs := slices.Collect(maps.Keys(lb.conns[addr]))
	lb.mu.Unlock()
	if len(fs) > 0 {
		klog.InfoS("Closing connections to failed apiserver", "server", addr, "count", len(fs))
	}
	for _, f := range fs {
		f.close()
	}
}

// pipe copies both ways until both directions end. A direction that ends
// cleanly (EOF) is passed on as a half-close so the other may finish, as
// plain TCP would; one that fails closes both.
func pipe(f *forward) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(f, f.backend, f.client)
	}()
	copyHalf(f, f.client, f.backend)
	<-done
}

func copyHalf(f *forward, dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		if cw.CloseWrite() == nil {
			return
		}
	}
	f.close()
}

// normalize drops duplicates and empty entries, keeping order, and returns
// the entries that are not host:port apart.
func normalize(servers []string) (list, invalid []string) {
	for _, s := range servers {
		if s == "" || slices.Contains(list, s) {
			continue
		}
		if host, port, err := net.SplitHostPort(s); err != nil || host == "" || port == "" {
			invalid = append(invalid, s)
			continue
		}
		list = append(list, s)
	}
	return list, invalid
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
