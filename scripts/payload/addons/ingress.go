package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	// The Caddy modules the configuration uses: the HTTP server with its
	// matchers and static responses, the reverse proxy, and TLS.
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	_ "github.com/caddyserver/caddy/v2/modules/caddytls"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	typednetworkingv1 "k8s.io/client-go/kubernetes/typed/networking/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/ingress"
)

// runIngress is skiff-ingress: Caddy serving the cluster's Ingresses of one
// IngressClass (see package ingress). Its flags are a set of its own, apart
// from those CoreDNS's packages put on the program's default set.
func runIngress(args []string) {
	flags := flag.NewFlagSet("skiff-ingress", flag.ExitOnError)
	var opts ingress.Options
	flags.StringVar(&opts.Class, "ingress-class", "caddy", "the IngressClass to serve")
	flags.StringVar(&opts.Controller, "controller", "skiff.dev/ingress-caddy", "the spec.controller of that IngressClass")
	flags.IntVar(&opts.Ports.HTTP, "http-port", 8080, "port Caddy serves HTTP on")
	flags.IntVar(&opts.Ports.HTTPS, "https-port", 8443, "port Caddy serves HTTPS on")
	flags.StringVar(&opts.PublishService, "publish-service", "", "namespace/name of the Service whose addresses go into the Ingresses' status")
	flags.StringVar(&opts.StateDir, "state-dir", "/tmp/caddy", "where Caddy keeps its few files (writable)")
	klog.InitFlags(flags)
	_ = flags.Parse(args) // ExitOnError
	klog.InfoS("Starting skiff-ingress", "args", args)
	// Caddy's instance ID goes under XDG_DATA_HOME, the rest under
	// --state-dir: keep both in the one writable place.
	if os.Getenv("XDG_DATA_HOME") == "" {
		_ = os.Setenv("XDG_DATA_HOME", opts.StateDir)
	}

	cfg, err := rest.InClusterConfig()
	if err != nil {
		klog.ErrorS(err, "skiff-ingress runs in a pod: no in-cluster configuration")
		os.Exit(1)
	}
	var client ingress.Clients
	if client.Core, err = typedcorev1.NewForConfig(cfg); err == nil {
		client.Networking, err = typednetworkingv1.NewForConfig(cfg)
	}
	if err != nil {
		klog.ErrorS(err, "Creating the Kubernetes client")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := ingress.Run(ctx, client, opts); err != nil {
		klog.ErrorS(err, "skiff-ingress failed")
		os.Exit(1)
	}
}
