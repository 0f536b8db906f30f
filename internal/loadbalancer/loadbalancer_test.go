package loadbalancer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// backend is a TCP server on 127.0.0.1 that greets each connection with its
// name and a newline, then echoes what it reads until EOF, so a client can
// tell which backend it reached and that bytes flow both ways.
type backend struct {
	name string
	l    net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, l: l, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer func() {
					b.mu.Lock()
					delete(b.conns, c)
					b.mu.Unlock()
					c.Close()
				}()
				if _, err := io.WriteString(c, name+"\n"); err != nil {
					return
				}
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(b.stop)
	return b
}

func (b *backend) addr() string { return b.l.Addr().String() }

// stopListening closes the listener only: new dials are refused while the
// established connections hang on, like a server whose host went away
// without resetting them.
func (b *backend) stopListening() { b.l.Close() }

// stop closes the listener and every connection, like a server that died.
func (b *backend) stop() {
	b.l.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *backend) active() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// serve starts lb.Serve; stop cancels its context and returns what it
// returned, failing the test if it does not return. The test's end stops
// it too.
func serve(t *testing.T, lb *LoadBalancer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = lb.Serve(ctx)
	}()
	stop = func() error {
		cancel()
		select {
		case <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

func newLB(t *testing.T, servers ...string) *LoadBalancer {
	t.Helper()
	lb, err := New("127.0.0.1:0", servers)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, lb)
	return lb
}

// client is a connection through the load balancer.
type client struct {
	net.Conn
	r *bufio.Reader
}

// connect dials lb and returns the connection and the name of the backend
// that greeted it, or "" if the load balancer closed it.
func connect(t *testing.T, lb *LoadBalancer) (*client, string) {
	t.Helper()
	c, err := net.Dial("tcp", lb.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := &client{Conn: c, r: bufio.NewReader(c)}
	line, err := cl.r.ReadString('\n')
	if err != nil {
		return cl, ""
	}
	return cl, strings.TrimSuffix(line, "\n")
}

// waitClosed checks the load balancer closes c: a read ends in EOF or a
// reset before the deadline rather than timing out.
func waitClosed(t *testing.T, c *client) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed: read err %v", err)
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNew(t *testing.T) {
	for _, servers := range [][]string{nil, {""}, {"no-port"}, {"127.0.0.1:1", ":6443"}} {
		if lb, err := New("127.0.0.1:0", servers); err == nil {
			lb.listener.Close()
			t.Errorf("New(%q) succeeded, want an error", servers)
		}
	}
	lb, err := New("127.0.0.1:0", []string{"a:1", "b:2", "a:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.listener.Close()
	if got := lb.Servers(); !slices.Equal(got, []string{"a:1", "b:2"}) {
		t.Errorf("Servers() = %q, want deduplicated [a:1 b:2]", got)
	}
	if !strings.HasPrefix(lb.Addr(), "127.0.0.1:") || strings.HasSuffix(lb.Addr(), ":0") {
		t.Errorf("Addr() = %q, want 127.0.0.1 and the picked port", lb.Addr())
	}
	if lb.URL() != "https://"+lb.Addr() {
		t.Errorf("URL() = %q", lb.URL())
	}
}

func TestForwards(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	lb := newLB(t, a.addr(), b.addr())

	c, name := connect(t, lb)
	if name != "a" {
		t.Fatalf("reached %q, want the first server a", name)
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	// Half-close: the backend sees EOF, stops echoing and closes, and we
	// still read what it sent before.
	if err := c.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c.r)
	if err != nil || string(rest) != "ping\n" {
		t.Fatalf("read %q, %v after half-close; want the echo then EOF", rest, err)
	}
	eventually(t, "backend connection closed", func() bool { return a.active() == 0 })
	eventually(t, "load balancer forgot the connection", func() bool {
		lb.mu.Lock()
		defer lb.mu.Unlock()
		return len(lb.conns) == 0
	})
}

func TestFailover(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	lb := newLB(t, a.addr(), b.addr(), c.addr())

	old, name := connect(t, lb)
	if name != "a" {
		t.Fatalf("reached %q, want a", name)
	}
	// a stops answering but its established connection hangs on: the load
	// balancer must move new connections to b and close the old one.
	a.stopListening()
	if _, name := connect(t, lb); name != "b" {
		t.Fatalf("after a failed, reached %q, want the next server b", name)
	}
	waitClosed(t, old)
	// b is preferred now that it answered.
	if _, name := connect(t, lb); name != "b" {
		t.Fatalf("reached %q, want the preferred server b", name)
	}
	// b dies; a is still down, so c, after both in list order.
	b.stop()
	if _, name := connect(t, lb); name != "c" {
		t.Fatalf("after b failed, reached %q, want c", name)
	}
	// Everything down: the client is closed rather than left waiting.
	c.stop()
	if _, name := connect(t, lb); name != "" {
		t.Fatalf("with every server down, reached %q", name)
	}
}

func TestSetServers(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	lb := newLB(t, a.addr(), b.addr())

	toA, _ := connect(t, lb)
	if _, name := connect(t, lb); name != "a" {
		t.Fatalf("reached %q, want a", name)
	}
	toB := []string{b.addr(), c.addr(), b.addr()}
	lb.SetServers(toB)
	if got, want := lb.Servers(), []string{b.addr(), c.addr()}; !slices.Equal(got, want) {
		t.Fatalf("Servers() = %q, want %q", got, want)
	}
	// a was removed: its connections are closed, new ones go to b.
	waitClosed(t, toA)
	eventually(t, "a's connections closed", func() bool { return a.active() == 0 })
	if _, name := connect(t, lb); name != "b" {
		t.Fatalf("after SetServers, reached %q, want b", name)
	}
	// b stays preferred although a, back in the list, comes first; and
	// connections to b survive.
	toB2, _ := connect(t, lb)
	lb.SetServers([]string{a.addr(), c.addr(), b.addr()})
	if _, name := connect(t, lb); name != "b" {
		t.Fatalf("reached %q, want the still listed preferred server b", name)
	}
	if _, err := io.WriteString(toB2, "still\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := toB2.r.ReadString('\n'); err != nil || line != "still\n" {
		t.Fatalf("connection to b after SetServers: %q, %v", line, err)
	}
}

func TestSetServersEmptyIgnored(t *testing.T) {
	a := startBackend(t, "a")
	lb := newLB(t, a.addr())
	c, _ := connect(t, lb)
	for _, servers := range [][]string{nil, {}, {""}, {"not-an-address"}} {
		lb.SetServers(servers)
		if got := lb.Servers(); !slices.Equal(got, []string{a.addr()}) {
			t.Fatalf("after SetServers(%q), Servers() = %q, want it unchanged", servers, got)
		}
	}
	if _, err := io.WriteString(c, "ok\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := c.r.ReadString('\n'); err != nil || line != "ok\n" {
		t.Fatalf("connection after ignored SetServers: %q, %v", line, err)
	}
	if _, name := connect(t, lb); name != "a" {
		t.Fatalf("reached %q, want a", name)
	}
}

func TestServeShutdown(t *testing.T) {
	a := startBackend(t, "a")
	lb, err := New("127.0.0.1:0", []string{a.addr()})
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, lb)
	c1, _ := connect(t, lb)
	c2, _ := connect(t, lb)
	eventually(t, "two backend connections", func() bool { return a.active() == 2 })

	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v after cancel, want nil", err)
	}
	// Serve has returned, so its handlers have: the connections are closed
	// on both sides, nothing is tracked and the listener is gone.
	waitClosed(t, c1)
	waitClosed(t, c2)
	eventually(t, "backend connections closed", func() bool { return a.active() == 0 })
	if n := len(lb.conns); n != 0 {
		t.Errorf("%d backends still tracked after Serve returned", n)
	}
	if c, err := net.Dial("tcp", lb.Addr()); err == nil {
		c.Close()
		t.Error("listener still accepting after Serve returned")
	}
}
