package control

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/server/flagz"
	"k8s.io/client-go/tools/cache"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	controlplaneapiserver "k8s.io/kubernetes/pkg/controlplane/apiserver"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// APIServerArgs are skiff's secure defaults for kube-apiserver (anonymous
// auth off, Node+RBAC, NodeRestriction, profiling off), merged with the
// user's --kube-apiserver-arg values.
//
// port is the port actually bound, which differs from cfg.HTTPSListenPort
// when that is 0 (any free port).
func APIServerArgs(cfg *config.Server, port int, tls pki.Dir, db *datastore.Backend, advertise net.IP) []string {
	d := map[string]string{
		"advertise-address":        advertise.String(),
		"allow-privileged":         "true",
		"anonymous-auth":           "false",
		"api-audiences":            serviceAccountIssuer(cfg),
		"authorization-mode":       "Node,RBAC",
		"bind-address":             cfg.BindAddress,
		"client-ca-file":           tls.Cert(pki.ClientCA),
		"enable-admission-plugins": "NodeRestriction",
		// Join tokens are upstream bootstrap tokens (see pkg/supervisor).
		"enable-bootstrap-token-auth":        "true",
		"etcd-servers":                       strings.Join(db.Endpoints, ","),
		"kubelet-certificate-authority":      tls.Cert(pki.ServerCA), // kubelets serve with certificates from it
		"kubelet-client-certificate":         tls.Cert(pki.ClientAPIServer),
		"kubelet-client-key":                 tls.Key(pki.ClientAPIServer),
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"profiling":                          "false",
		"proxy-client-cert-file":             tls.Cert(pki.ClientAuthProxy),
		"proxy-client-key-file":              tls.Key(pki.ClientAuthProxy),
		"requestheader-allowed-names":        pki.AuthProxyUser,
		"requestheader-client-ca-file":       tls.Cert(pki.RequestHeaderCA),
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"secure-port":                        strconv.Itoa(port),
		"service-account-issuer":             serviceAccountIssuer(cfg),
		"service-account-key-file":           tls.PublicKey(pki.ServiceAccountKey),
		"service-account-signing-key-file":   tls.Key(pki.ServiceAccountKey),
		"service-cluster-ip-range":           cfg.ServiceCIDR.String(),
		"service-node-port-range":            config.DefaultServiceNodePortRange,
		// Without a grace period the apiserver leaves open watches alone at
		// shutdown and waits up to a minute for them; the in-process
		// kubelet's and kube-proxy's informers keep theirs open to the end.
		"shutdown-watch-termination-grace-period": "1s",
		"storage-backend":                         "etcd3",
		"tls-cert-file":                           tls.Cert(pki.ServingAPIServerChain),
		"tls-private-key-file":                    tls.Key(pki.ServingAPIServer),
	}
	if cfg.SoleServer() {
		// No other apiserver can share this datastore, so none needs the
		// leases by which apiservers find each other, each rewritten every
		// 10 s (a quarter of an idle cluster's writes): the kubernetes
		// Service's endpoint is kept by count, and the proxy to peers of
		// other versions is off.
		d["endpoint-reconciler-type"] = "master-count"
		d["feature-gates"] = "UnknownVersionInteroperabilityProxy=false"
	}
	if advertise.IsLoopback() {
		// The endpoint reconciler refuses a loopback address (it would
		// publish it as the kubernetes Service's endpoint); with no network
		// to advertise, publish none.
		d["endpoint-reconciler-type"] = "none"
	}
	if cfg.SecretsEncryption {
		d["encryption-provider-config"] = cfg.EncryptionConfigFile()
		// `skiff secrets-encrypt rotate-keys` changes the keys while
		// the apiserver runs; it reads the file again within a minute.
		d["encryption-provider-config-automatic-reload"] = "true"
	}
	if db.CAFile != "" {
		d["etcd-cafile"] = db.CAFile
	}
	if db.CertFile != "" {
		d["etcd-certfile"] = db.CertFile
	}
	if db.KeyFile != "" {
		d["etcd-keyfile"] = db.KeyFile
	}
	return Args(d, cfg.ExtraAPIServerArgs)
}

func serviceAccountIssuer(cfg *config.Server) string {
	return "https://kubernetes.default.svc." + cfg.ClusterDomain
}

// SoleServerIdentityLeaseRenewal is how often a sole server's apiserver
// renews its identity lease (upstream: every 10 s). The lease lasts an
// hour and is collected only once expired; with no other apiserver on the
// datastore nothing reads it fresher (the peer proxy is off, and
// rotate-keys only counts HA servers, which keep 10 s). Measured on an
// idle single node: at 10 s it was half of the datastore's revisions, at
// 1 min still a quarter (one of ~4 writes a minute, each ~16 SQLite pages).
const SoleServerIdentityLeaseRenewal = 10 * time.Minute

// RenewIdentityLeaseEvery sets how often this process's apiserver renews
// its identity lease. It is process-wide, an upstream package variable (no
// flag in v1.37), so it is set once, before RunAPIServer.
func RenewIdentityLeaseEvery(d time.Duration) {
	controlplaneapiserver.IdentityLeaseRenewIntervalPeriod = d
}

// RunAPIServer runs kube-apiserver until ctx ends, serving on ln (bound by
// the caller so that a port in use is reported before anything starts).
// handlers serve paths of skiff's own (the join API) by prefix, behind the
// apiserver's authentication, authorization and priority-and-fairness
// filters, as its own non-REST paths are.
func RunAPIServer(ctx context.Context, args []string, ln net.Listener, handlers map[string]http.Handler) error {
	logArgs("kube-apiserver", args)
	s, err := apiServerOptions(args)
	if err != nil {
		return err
	}
	s.SecureServing.Listener = ln
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-apiserver feature gates: %w", err)
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	// app.Run's steps, with skiff's handlers added to the server chain
	// before it runs.
	if completed.InformerName, err = cache.NewInformerName("kube-apiserver"); err != nil {
		return err
	}
	config, err := app.NewConfig(completed)
	if err != nil {
		return err
	}
	cc, err := config.Complete()
	if err != nil {
		return err
	}
	server, err := app.CreateServerChain(cc)
	if err != nil {
		return err
	}
	for prefix, h := range handlers {
		server.GenericAPIServer.Handler.NonGoRestfulMux.HandlePrefix(prefix, h)
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return err
	}
	return prepared.Run(ctx)
}

func apiServerOptions(args []string) (*options.ServerRunOptions, error) {
	s := options.NewServerRunOptions()
	nfs := s.Flags()
	s.Flagz = flagz.NamedFlagSetsReader{FlagSets: nfs}
	return s, parseFlags("kube-apiserver", nfs, args)
}
