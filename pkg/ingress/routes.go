// Package ingress is skiff's ingress add-on: it turns the cluster's Ingress
// objects into a configuration for Caddy's HTTP server and reverse proxy,
// which serves them. Caddy does the serving; this package only says what to
// serve, following the Ingress API's matching rules.
package ingress

import (
	"cmp"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/caddy/v2/modules/filestorage"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Ports are where Caddy listens inside its pod; the add-on's Service maps the
// node's 80 and 443 onto them, so the program needs no privileged port.
type Ports struct {
	HTTP, HTTPS int
}

// Snapshot is what a configuration is built from: the Ingresses this
// controller serves, and the Services and TLS Secrets they name.
type Snapshot struct {
	Ingresses []*networkingv1.Ingress
	// Service and Secret look objects up by namespace and name; nil when
	// absent.
	Service func(namespace, name string) *corev1.Service
	Secret  func(namespace, name string) *corev1.Secret
}

// Problem is something in one Ingress that could not be served as asked:
// its route answers 503, or its TLS host gets no certificate, and the rest
// of the configuration is unaffected.
type Problem struct {
	Ingress *networkingv1.Ingress
	Reason  string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s/%s: %s", p.Ingress.Namespace, p.Ingress.Name, p.Reason)
}

// route is one (host, path) rule before it becomes a Caddy route; the fields
// beyond the match decide precedence.
type route struct {
	host     string
	path     string
	exact    bool
	catchAll bool // an Ingress's defaultBackend
	order    int  // position of the Ingress, oldest first
	handler  json.RawMessage
}

// Build returns Caddy's configuration for the snapshot, and what in it could
// not be served. The same snapshot always gives the same bytes, so a caller
// can skip reloading Caddy when nothing changed.
// stateDir is where Caddy keeps its few files (an instance ID, TLS
// housekeeping).
func Build(snap Snapshot, ports Ports, stateDir string) ([]byte, []Problem) {
	ingresses := slices.Clone(snap.Ingresses)
	// Where two Ingresses claim the same host and path, the older one wins,
	// as with other controllers; the name breaks ties deterministically.
	slices.SortFunc(ingresses, func(a, b *networkingv1.Ingress) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})

	var routes []route
	var problems []Problem
	var certs caddytls.PEMLoader
	var policies caddytls.ConnectionPolicies
	for i, ing := range ingresses {
		backend := func(b networkingv1.IngressBackend) json.RawMessage {
			h, err := upstream(snap, ing.Namespace, b)
			if err != nil {
				problems = append(problems, Problem{ing, err.Error()})
				return unavailable
			}
			return h
		}
		if b := ing.Spec.DefaultBackend; b != nil {
			routes = append(routes, route{catchAll: true, order: i, handler: backend(*b)})
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				exact := p.PathType != nil && *p.PathType == networkingv1.PathTypeExact
				routes = append(routes, route{host: rule.Host, path: p.Path, exact: exact, order: i, handler: backend(p.Backend)})
			}
		}
		for _, t := range ing.Spec.TLS {
			pair, err := certificate(snap, ing.Namespace, t.SecretName)
			if err != nil {
				problems = append(problems, Problem{ing, err.Error()})
				continue
			}
			certs = append(certs, pair)
			policy := &caddytls.ConnectionPolicy{CertSelection: &caddytls.CustomCertSelectionPolicy{AnyTag: pair.Tags}}
			if len(t.Hosts) > 0 {
				policy.MatchersRaw = caddy.ModuleMap{"sni": caddyconfig.JSON(caddytls.MatchServerName(t.Hosts), nil)}
			}
			policies = append(policies, policy)
		}
	}
	slices.SortStableFunc(routes, precedence)

	var list caddyhttp.RouteList
	for _, r := range routes {
		list = append(list, r.caddy())
	}
	// Nothing matched: say so, as other controllers' default backends do,
	// rather than Caddy's empty 200.
	list = append(list, caddyhttp.Route{HandlersRaw: []json.RawMessage{notFound}, Terminal: true})

	off := &caddyhttp.AutoHTTPSConfig{Disabled: true} // certificates come from Secrets only
	servers := map[string]*caddyhttp.Server{
		"http": {Listen: []string{":" + strconv.Itoa(ports.HTTP)}, Routes: list, AutoHTTPS: off},
	}
	apps := caddy.ModuleMap{}
	if len(certs) > 0 {
		// Caddy needs a certificate to serve TLS at all, so the HTTPS port
		// opens with the first TLS Secret.
		servers["https"] = &caddyhttp.Server{Listen: []string{":" + strconv.Itoa(ports.HTTPS)}, Routes: list,
			AutoHTTPS: off, TLSConnPolicies: append(policies, &caddytls.ConnectionPolicy{})}
		apps["tls"] = caddyconfig.JSON(caddytls.TLS{CertificatesRaw: caddy.ModuleMap{
			"load_pem": caddyconfig.JSON(certs, nil)}}, nil)
	}
	apps["http"] = caddyconfig.JSON(caddyhttp.App{HTTPPort: ports.HTTP, HTTPSPort: ports.HTTPS, Servers: servers}, nil)
	cfg, err := json.Marshal(caddy.Config{
		// No admin endpoint: the Ingresses are the only way in. No
		// autosave: the configuration holds the TLS Secrets' keys.
		Admin:      &caddy.AdminConfig{Disabled: true, Config: &caddy.ConfigSettings{Persist: new(false)}},
		StorageRaw: caddyconfig.JSONModuleObject(filestorage.FileStorage{Root: stateDir}, "module", "file_system", nil),
		AppsRaw:    apps,
	})
	if err != nil {
		panic(fmt.Sprintf("ingress: marshal Caddy configuration: %v", err)) // only plain data above
	}
	return cfg, problems
}

// precedence orders routes as the Ingress API asks: rules for a named host
// before wildcard hosts before rules for any host; within those, the longest
// path first and Exact before Prefix; defaultBackends last; then the oldest
// Ingress first.
func precedence(a, b route) int {
	hostRank := func(r route) int {
		switch {
		case r.catchAll:
			return 3
		case r.host == "":
			return 2
		case strings.HasPrefix(r.host, "*."):
			return 1
		}
		return 0
	}
	exactFirst := func(r route) int {
		if r.exact {
			return 0
		}
		return 1
	}
	return cmp.Or(cmp.Compare(hostRank(a), hostRank(b)),
		cmp.Compare(len(b.path), len(a.path)),
		cmp.Compare(exactFirst(a), exactFirst(b)),
		cmp.Compare(a.order, b.order))
}

func (r route) caddy() caddyhttp.Route {
	match := caddy.ModuleMap{}
	if r.host != "" {
		match["host"] = caddyconfig.JSON(caddyhttp.MatchHost{r.host}, nil)
	}
	if !r.catchAll {
		match["path"] = caddyconfig.JSON(paths(r.path, r.exact), nil)
	}
	return caddyhttp.Route{MatcherSetsRaw: caddyhttp.RawMatcherSets{match}, HandlersRaw: []json.RawMessage{r.handler}, Terminal: true}
}

// paths is Caddy's path matcher for an Ingress path. A Prefix matches whole
// path elements: /foo matches /foo and /foo/bar but not /foobar, and a
// trailing slash is ignored. ImplementationSpecific is served as Prefix.
func paths(p string, exact bool) caddyhttp.MatchPath {
	if exact {
		return caddyhttp.MatchPath{p}
	}
	p = strings.TrimRight(p, "/")
	if p == "" {
		return caddyhttp.MatchPath{"*"}
	}
	return caddyhttp.MatchPath{p, p + "/*"}
}

var (
	notFound = caddyconfig.JSONModuleObject(caddyhttp.StaticResponse{
		StatusCode: caddyhttp.WeakString("404"), Body: "404 page not found\n"}, "handler", "static_response", nil)
	unavailable = caddyconfig.JSONModuleObject(caddyhttp.StaticResponse{
		StatusCode: caddyhttp.WeakString("503"), Body: "503 backend unavailable\n"}, "handler", "static_response", nil)
)

// upstream proxies to a Service through its cluster IP, so kube-proxy does the
// balancing across its endpoints, as for any other client in the cluster.
func upstream(snap Snapshot, namespace string, b networkingv1.IngressBackend) (json.RawMessage, error) {
	if b.Service == nil {
		return nil, fmt.Errorf("only Service backends are supported")
	}
	svc := snap.Service(namespace, b.Service.Name)
	if svc == nil {
		return nil, fmt.Errorf("service %q not found", b.Service.Name)
	}
	port := b.Service.Port.Number
	if name := b.Service.Port.Name; name != "" {
		i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("service %q has no port named %q", svc.Name, name)
		}
		port = svc.Spec.Ports[i].Port
	}
	var host string
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		host = svc.Spec.ExternalName
	case svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone:
		return nil, fmt.Errorf("service %q is headless: give it a cluster IP", svc.Name)
	default:
		host = svc.Spec.ClusterIP
	}
	dial := caddy.JoinNetworkAddress("", host, strconv.Itoa(int(port)))
	return caddyconfig.JSONModuleObject(reverseproxy.Handler{
		Upstreams: reverseproxy.UpstreamPool{{Dial: dial}},
	}, "handler", "reverse_proxy", nil), nil
}

// certificate loads a kubernetes.io/tls Secret, tagged with its namespace
// and name so that policies select it.
func certificate(snap Snapshot, namespace, name string) (caddytls.CertKeyPEMPair, error) {
	if name == "" {
		return caddytls.CertKeyPEMPair{}, fmt.Errorf("a TLS entry without secretName (no default certificate is configured)")
	}
	s := snap.Secret(namespace, name)
	if s == nil {
		return caddytls.CertKeyPEMPair{}, fmt.Errorf("TLS secret %q not found", name)
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		return caddytls.CertKeyPEMPair{}, fmt.Errorf("TLS secret %q lacks %s or %s", name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	// Caddy refuses a whole configuration over one bad pair: check it here,
	// so that only this Ingress's TLS host goes without.
	if _, err := tls.X509KeyPair(crt, key); err != nil {
		return caddytls.CertKeyPEMPair{}, fmt.Errorf("TLS secret %q: %w", name, err)
	}
	return caddytls.CertKeyPEMPair{CertificatePEM: string(crt), KeyPEM: string(key), Tags: []string{namespace + "/" + name}}, nil
}
