package ingress

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"
)

// cluster is a snapshot's world: Services whose "cluster IP" is loopback and
// whose port is a real backend's, each answering with its own name.
type cluster struct {
	services map[string]*corev1.Service
	secrets  map[string]*corev1.Secret
}

func newCluster(t *testing.T, names ...string) *cluster {
	c := &cluster{services: map[string]*corev1.Service{}, secrets: map[string]*corev1.Secret{}}
	for _, name := range names {
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", name, r.URL.Path)
		}))
		t.Cleanup(backend.Close)
		u, _ := url.Parse(backend.URL)
		port, _ := strconv.Atoi(u.Port())
		c.services["default/"+name] = &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: "127.0.0.1",
				Ports: []corev1.ServicePort{{Name: "http", Port: int32(port)}}},
		}
	}
	return c
}

func (c *cluster) snapshot(ings ...*networkingv1.Ingress) Snapshot {
	return Snapshot{
		Ingresses: ings,
		Service:   func(ns, name string) *corev1.Service { return c.services[ns+"/"+name] },
		Secret:    func(ns, name string) *corev1.Secret { return c.secrets[ns+"/"+name] },
	}
}

// backend names a Service by port name, as most Ingresses do by number.
func backend(svc string) networkingv1.IngressBackend {
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: svc, Port: networkingv1.ServiceBackendPort{Name: "http"}}}
}

func path(p string, typ networkingv1.PathType, svc string) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{Path: p, PathType: &typ, Backend: backend(svc)}
}

func ingress(name string, age time.Duration, host string, paths ...networkingv1.HTTPIngressPath) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
			CreationTimestamp: metav1.NewTime(time.Unix(1e9, 0).Add(-age))},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}}},
	}
}

// serve loads the snapshot's configuration into a real Caddy and returns its
// HTTP and HTTPS addresses.
func serve(t *testing.T, snap Snapshot) (httpAddr, httpsAddr string, problems []Problem) {
	t.Helper()
	ports := Ports{HTTP: freePort(t), HTTPS: freePort(t)}
	state := t.TempDir()
	t.Setenv("XDG_DATA_HOME", state) // Caddy's instance ID goes there
	cfg, problems := Build(snap, ports, state)
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("Caddy refused the configuration: %v\n%s", err, cfg)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return fmt.Sprintf("127.0.0.1:%d", ports.HTTP), fmt.Sprintf("127.0.0.1:%d", ports.HTTPS), problems
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// get asks addr for host and path and returns "status body".
func get(t *testing.T, client *http.Client, scheme, addr, host, p string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, scheme+"://"+addr+p, nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, p, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

func TestPathsAndHostsFollowTheIngressAPI(t *testing.T) {
	c := newCluster(t, "root", "api", "exact", "named", "wild", "old", "new", "fallback")
	addr, _, problems := serve(t, c.snapshot(
		ingress("paths", time.Hour, "",
			path("/", networkingv1.PathTypePrefix, "root"),
			path("/api/", networkingv1.PathTypePrefix, "api"),
			path("/api/exact", networkingv1.PathTypeExact, "exact"),
			path("/mixed", networkingv1.PathTypeImplementationSpecific, "api")),
		ingress("named-host", time.Hour, "a.example", path("/", networkingv1.PathTypePrefix, "named")),
		ingress("wildcard-host", time.Hour, "*.example", path("/", networkingv1.PathTypePrefix, "wild")),
		// Two Ingresses claim the same host and path: the older serves it.
		ingress("newer", time.Minute, "dup.example", path("/", networkingv1.PathTypePrefix, "new")),
		ingress("older", 2*time.Hour, "dup.example", path("/", networkingv1.PathTypePrefix, "old")),
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "default-backend"},
			Spec: networkingv1.IngressSpec{DefaultBackend: ptr.To(backend("fallback"))}},
	))
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	for _, tc := range []struct{ host, path, want string }{
		{"x.other", "/", "200 root /"},
		{"x.other", "/api", "200 api /api"},
		{"x.other", "/api/v1", "200 api /api/v1"},
		{"x.other", "/apix", "200 root /apix"}, // a prefix matches whole path elements
		{"x.other", "/api/exact", "200 exact /api/exact"},
		{"x.other", "/api/exact/more", "200 api /api/exact/more"},
		{"x.other", "/mixed/thing", "200 api /mixed/thing"},
		{"a.example", "/api", "200 named /api"},    // a host's rules before hostless ones
		{"b.example", "/", "200 wild /"},           // the wildcard covers one label
		{"deep.b.example", "/api", "200 api /api"}, // ... and no more
		{"dup.example", "/", "200 old /"},
	} {
		if got := get(t, http.DefaultClient, "http", addr, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s: got %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestDefaultBackendAndNotFound(t *testing.T) {
	c := newCluster(t, "only", "fallback")
	addr, _, _ := serve(t, c.snapshot(ingress("one", 0, "", path("/only", networkingv1.PathTypeExact, "only"))))
	if got := get(t, http.DefaultClient, "http", addr, "x", "/other"); got != "404 404 page not found" {
		t.Errorf("unmatched path: got %q", got)
	}

	withDefault := ingress("one", 0, "", path("/only", networkingv1.PathTypeExact, "only"))
	withDefault.Spec.DefaultBackend = ptr.To(backend("fallback"))
	addr, _, _ = serve(t, c.snapshot(withDefault))
	if got := get(t, http.DefaultClient, "http", addr, "x", "/other"); got != "200 fallback /other" {
		t.Errorf("defaultBackend: got %q", got)
	}
}

func TestUnservableRulesAnswer503AndSayWhy(t *testing.T) {
	c := newCluster(t, "good")
	c.services["default/headless"] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "headless"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	badPort := path("/bad-port", networkingv1.PathTypePrefix, "good")
	badPort.Backend.Service.Port = networkingv1.ServiceBackendPort{Name: "grpc"}
	broken := ingress("broken", 0, "",
		path("/missing", networkingv1.PathTypePrefix, "no-such-service"),
		path("/headless", networkingv1.PathTypePrefix, "headless"),
		badPort)
	broken.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"x"}, SecretName: "no-such-secret"}}
	addr, _, problems := serve(t, c.snapshot(broken, ingress("fine", 0, "", path("/good", networkingv1.PathTypePrefix, "good"))))

	var reasons []string
	for _, p := range problems {
		if p.Ingress.Name != "broken" {
			t.Errorf("problem blamed on %s: %s", p.Ingress.Name, p)
		}
		reasons = append(reasons, p.Reason)
	}
	all := strings.Join(reasons, "\n")
	for _, want := range []string{`service "no-such-service" not found`, `service "headless" is headless`,
		`service "good" has no port named "grpc"`, `TLS secret "no-such-secret" not found`} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	for _, p := range []string{"/missing", "/headless", "/bad-port"} {
		if got := get(t, http.DefaultClient, "http", addr, "x", p); !strings.HasPrefix(got, "503 ") {
			t.Errorf("%s: got %q, want a 503", p, got)
		}
	}
	if got := get(t, http.DefaultClient, "http", addr, "x", "/good"); got != "200 good /good" {
		t.Errorf("the other Ingress: got %q", got)
	}
}

func TestTLSFromSecretsBySNI(t *testing.T) {
	c := newCluster(t, "secure")
	crt, key, err := cert.GenerateSelfSignedCertKey("secure.example", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.secrets["default/secure-tls"] = &corev1.Secret{Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
	c.secrets["default/garbage"] = &corev1.Secret{Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("not a certificate"), corev1.TLSPrivateKeyKey: key}}
	secure := ingress("secure", 0, "secure.example", path("/", networkingv1.PathTypePrefix, "secure"))
	secure.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"secure.example"}, SecretName: "secure-tls"}}
	garbage := ingress("garbage", 0, "garbage.example", path("/", networkingv1.PathTypePrefix, "secure"))
	garbage.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"garbage.example"}, SecretName: "garbage"}}
	_, httpsAddr, problems := serve(t, c.snapshot(secure, garbage))
	if len(problems) != 1 || problems[0].Ingress.Name != "garbage" {
		t.Fatalf("want one problem, with the garbage Secret; got %v", problems)
	}

	// The certificate served is the Secret's: a client trusting only it
	// and verifying the name gets through.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(crt)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "secure.example"}}}
	if got := get(t, client, "https", httpsAddr, "secure.example", "/s"); got != "200 secure /s" {
		t.Errorf("HTTPS: got %q", got)
	}
}
