package ingress

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	typednetworkingv1 "k8s.io/client-go/kubernetes/typed/networking/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

const (
	// resync rebuilds the configuration this often besides on changes.
	resync = 5 * time.Minute
	// settle lets a burst of changes (an Ingress and its Service applied
	// together) become one reload.
	settle = 200 * time.Millisecond

	// defaultClassAnnotation marks the IngressClass that Ingresses without
	// one get.
	defaultClassAnnotation = "ingressclass.kubernetes.io/is-default-class"
	// legacyClassAnnotation names the class on Ingresses older than
	// spec.ingressClassName.
	legacyClassAnnotation = "kubernetes.io/ingress.class"
)

// Options is the controller's configuration, from its command line.
type Options struct {
	// Class is the IngressClass this controller serves.
	Class string
	// Controller is the spec.controller an IngressClass must name for
	// Class to be served.
	Controller string
	Ports      Ports
	// PublishService (namespace/name) is the LoadBalancer Service in front
	// of Caddy: its addresses become the Ingresses' status.
	PublishService string
	// StateDir is where Caddy keeps its few files.
	StateDir string
}

// Clients are the two API groups the controller reads and writes. Typed
// clients of just these, not a whole Clientset and its informer factory,
// keep the other groups' generated code out of the program: 18 MB less of
// it to map in every node's ingress pod.
type Clients struct {
	Core       typedcorev1.CoreV1Interface
	Networking typednetworkingv1.NetworkingV1Interface
}

// Run serves the cluster's Ingresses of opts.Class with Caddy until ctx ends.
func Run(ctx context.Context, client Clients, opts Options) error {
	ingresses := newInformer(client.Networking.RESTClient(), "ingresses", &networkingv1.Ingress{}, nil)
	classes := newInformer(client.Networking.RESTClient(), "ingressclasses", &networkingv1.IngressClass{}, nil)
	services := newInformer(client.Core.RESTClient(), "services", &corev1.Service{}, nil)
	// Only TLS Secrets matter; leave the others out of memory.
	secrets := newInformer(client.Core.RESTClient(), "secrets", &corev1.Secret{}, func(o *metav1.ListOptions) {
		o.FieldSelector = "type=" + string(corev1.SecretTypeTLS)
	})
	c := &controller{
		client:    client,
		opts:      opts,
		ingresses: networkinglisters.NewIngressLister(ingresses.GetIndexer()),
		classes:   networkinglisters.NewIngressClassLister(classes.GetIndexer()),
		services:  corelisters.NewServiceLister(services.GetIndexer()),
		secrets:   corelisters.NewSecretLister(secrets.GetIndexer()),
		reported:  map[string]string{},
	}
	informers := []cache.SharedIndexInformer{ingresses, classes, services, secrets}

	// Every change asks for one rebuild of the whole configuration: a
	// queue of one key coalesces bursts and retries with backoff.
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	enqueue := func(any) { queue.AddAfter(syncKey, settle) }
	handler := cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue}
	for _, inf := range informers {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.Core.Events("")})
	defer broadcaster.Shutdown()
	c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "skiff-ingress"})

	// Every return below comes after ctx has ended, so the informers are
	// stopping, and Run waits until they have.
	var running sync.WaitGroup
	defer running.Wait()
	synced := make([]cache.InformerSynced, 0, len(informers))
	for _, inf := range informers {
		running.Go(func() { inf.RunWithContext(ctx) })
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	defer func() {
		if err := caddy.Stop(); err != nil {
			klog.ErrorS(err, "Stopping Caddy")
		}
	}()

	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	queue.Add(syncKey) // serve (a 404 for everything) even before the first Ingress
	for {
		key, shutdown := queue.Get()
		if shutdown {
			return nil
		}
		if err := c.sync(ctx); err != nil {
			klog.InfoS("Syncing Ingresses; will retry", "err", err)
			queue.AddRateLimited(key)
		} else {
			queue.Forget(key)
		}
		queue.Done(key)
	}
}

// newInformer watches one resource of an API group in every namespace,
// listed with tweak (nil for all objects).
func newInformer(client cache.Getter, resource string, obj runtime.Object, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	if tweak == nil {
		tweak = func(*metav1.ListOptions) {}
	}
	lw := cache.NewFilteredListWatchFromClient(client, resource, metav1.NamespaceAll, tweak)
	return cache.NewSharedIndexInformer(lw, obj, resync, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// syncKey is the queue's one key: the whole configuration.
const syncKey = "ingresses"

type controller struct {
	client    Clients
	opts      Options
	ingresses networkinglisters.IngressLister
	classes   networkinglisters.IngressClassLister
	services  corelisters.ServiceLister
	secrets   corelisters.SecretLister
	recorder  record.EventRecorder

	loaded   []byte            // the configuration Caddy runs
	reported map[string]string // ingress key -> problems last reported
}

// sync rebuilds Caddy's configuration from the caches, reloads Caddy if it
// changed, and publishes the served Ingresses' status.
func (c *controller) sync(ctx context.Context) error {
	all, err := c.ingresses.List(labels.Everything())
	if err != nil {
		return err
	}
	defaultClass := false
	if class, err := c.classes.Get(c.opts.Class); err == nil && class.Spec.Controller == c.opts.Controller {
		defaultClass = class.Annotations[defaultClassAnnotation] == "true"
	} else {
		// Without its IngressClass the controller serves nothing, as the
		// Ingress API asks; the add-on's manifest creates it.
		klog.InfoS("IngressClass missing or of another controller: serving no Ingress", "class", c.opts.Class, "controller", c.opts.Controller)
		all = nil
	}
	var ours []*networkingv1.Ingress
	for _, ing := range all {
		if serves(ing, c.opts.Class, defaultClass) {
			ours = append(ours, ing)
		}
	}
	cfg, problems := Build(Snapshot{
		Ingresses: ours,
		Service: func(ns, name string) *corev1.Service {
			s, _ := c.services.Services(ns).Get(name)
			return s
		},
		Secret: func(ns, name string) *corev1.Secret {
			s, _ := c.secrets.Secrets(ns).Get(name)
			return s
		},
	}, c.opts.Ports, c.opts.StateDir)
	report(c.recorder, ours, problems, c.reported)

	if !bytes.Equal(cfg, c.loaded) {
		// The configuration holds TLS keys: it is never logged.
		if err := caddy.Load(cfg, false); err != nil {
			return fmt.Errorf("caddy refused the configuration (a port taken?): %w", err)
		}
		c.loaded = cfg
		klog.InfoS("Serving Ingresses", "count", len(ours), "problems", len(problems))
	}
	return publish(ctx, c.client.Networking, c.services, c.opts.PublishService, ours)
}

// serves tells whether an Ingress belongs to this controller's class.
func serves(ing *networkingv1.Ingress, class string, isDefault bool) bool {
	if c := ing.Spec.IngressClassName; c != nil {
		return *c == class
	}
	if c, ok := ing.Annotations[legacyClassAnnotation]; ok {
		return c == class
	}
	return isDefault
}

// report records one Warning event per Ingress whose problems changed, and
// logs them, so `kubectl describe ingress` says why a path answers 503.
func report(recorder record.EventRecorder, ours []*networkingv1.Ingress, problems []Problem, reported map[string]string) {
	now := map[string]string{}
	byKey := map[string]*networkingv1.Ingress{}
	for _, p := range problems {
		key := p.Ingress.Namespace + "/" + p.Ingress.Name
		now[key] += p.Reason + "; "
		byKey[key] = p.Ingress
	}
	for key, text := range now {
		if reported[key] != text {
			klog.InfoS("Ingress not fully served", "ingress", key, "problems", text)
			recorder.Event(byKey[key], corev1.EventTypeWarning, "IngressNotServed", text)
		}
	}
	for _, ing := range ours {
		key := ing.Namespace + "/" + ing.Name
		if _, bad := now[key]; !bad && reported[key] != "" {
			recorder.Event(ing, corev1.EventTypeNormal, "IngressServed", "every rule is served")
		}
	}
	clear(reported)
	for k, v := range now {
		reported[k] = v
	}
}

// publish copies the addresses of the Service in front of Caddy into every
// served Ingress's status, so `kubectl get ingress` shows where it answers.
func publish(ctx context.Context, client typednetworkingv1.NetworkingV1Interface, services corelisters.ServiceLister, publishService string, ours []*networkingv1.Ingress) error {
	if publishService == "" {
		return nil
	}
	ns, name, err := cache.SplitMetaNamespaceKey(publishService)
	if err != nil {
		return fmt.Errorf("--publish-service %q: %w", publishService, err)
	}
	var want []networkingv1.IngressLoadBalancerIngress
	if svc, err := services.Services(ns).Get(name); err == nil {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			want = append(want, networkingv1.IngressLoadBalancerIngress{IP: in.IP, Hostname: in.Hostname})
		}
	}
	var firstErr error
	for _, ing := range ours {
		if apiequality.Semantic.DeepEqual(ing.Status.LoadBalancer.Ingress, want) {
			continue
		}
		update := ing.DeepCopy()
		update.Status.LoadBalancer.Ingress = want
		if _, err := client.Ingresses(ing.Namespace).UpdateStatus(ctx, update, metav1.UpdateOptions{}); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("ingress %s/%s: %w", ing.Namespace, ing.Name, err)
		}
	}
	return firstErr
}
