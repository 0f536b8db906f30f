package helmchart

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"helm.sh/helm/v4/pkg/release"
	"helm.sh/helm/v4/pkg/release/common"
)

// Component names the controller in events and in the apiserver's logs.
const Component = "skiff-helm-controller"

// finalizer keeps a deleted HelmChart until its release is uninstalled.
const finalizer = "skiff.dev/helm-uninstall"

// resync reads every HelmChart again this often, so that a chart changed
// on disk, or a values Secret, is upgraded without an edit of the
// HelmChart.
const resync = time.Minute

// workers is how many releases may be installed at once; one release is
// never worked on twice at a time.
const workers = 2

// Controller installs, upgrades and uninstalls the cluster's HelmCharts.
type Controller struct {
	dirs    Dirs
	client  kubernetes.Interface
	dynamic dynamic.Interface
	getter  restGetter
	log     slog.Handler
	queue   workqueue.TypedRateLimitingInterface[string]
	charts  cache.GenericLister
	configs cache.GenericLister
}

// Run runs the controller as rc's user until ctx ends. The CRDs must be
// served (EnsureCRDs).
func Run(ctx context.Context, rc *rest.Config, dirs Dirs) error {
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	disc := memory.NewMemCacheClient(client.Discovery())
	c := &Controller{
		dirs: dirs, client: client, dynamic: dyn,
		getter: restGetter{rc: rc, discovery: disc, mapper: restmapper.NewDeferredDiscoveryRESTMapper(disc)},
		log:    logr.ToSlogHandler(klog.Background().WithName("helm")),
		// A failed release is reinstalled after 5 s, then less and less
		// often, up to every 5 minutes.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Second, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "helmcharts"}),
	}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, resync)
	charts, configs := factory.ForResource(chartsResource), factory.ForResource(configsResource)
	c.charts, c.configs = charts.Lister(), configs.Lister()
	enqueue := cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue, // a HelmChartConfig's removal changes its chart's values
	}
	if _, err := charts.Informer().AddEventHandler(enqueue); err != nil {
		return err
	}
	if _, err := configs.Informer().AddEventHandler(enqueue); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	defer c.queue.ShutDown()
	for gvr, synced := range factory.WaitForCacheSync(ctx.Done()) {
		if !synced {
			return fmt.Errorf("listing %s: %w", gvr.Resource, ctx.Err())
		}
	}
	klog.InfoS("Helm controller started", "manifestsDir", dirs.Manifests, "staticChartsDir", dirs.StaticCharts)
	for range workers {
		go wait.UntilWithContext(ctx, c.work, time.Second)
	}
	<-ctx.Done()
	return nil
}

// enqueue adds the HelmChart an object concerns: itself, or the chart a
// HelmChartConfig of the same name configures.
func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) work(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		err := c.reconcile(ctx, key)
		if err != nil {
			klog.InfoS("HelmChart will be tried again", "helmchart", key, "err", err)
			c.queue.AddRateLimited(key)
		} else {
			c.queue.Forget(key)
		}
		c.queue.Done(key)
	}
}

// reconcile brings one HelmChart's release to what it asks for. An error
// means: try again later.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	obj, err := c.charts.ByNamespace(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // gone; its finalizer saw to the release
	}
	if err != nil {
		return err
	}
	u := obj.(*unstructured.Unstructured)
	hc := &HelmChart{}
	if err := fromUnstructured(u, hc); err != nil {
		return nil // the CRD's schema lets nothing unreadable in
	}
	cfg, err := c.config(ns, name)
	if err != nil {
		return err
	}
	spec := effectiveSpec(hc, cfg)
	target := spec.TargetNamespace
	if target == "" {
		target = ns
	}
	getter := c.getter
	getter.namespace = target
	ops, err := newReleaseOps(getter, c.log, name, spec)
	if err != nil {
		return c.report(ctx, u, hc, corev1.EventTypeWarning, "ChartFailed", err)
	}
	if hc.DeletionTimestamp != nil {
		return c.remove(ctx, u, hc, ops)
	}
	if !slices.Contains(hc.Finalizers, finalizer) {
		u = u.DeepCopy()
		u.SetFinalizers(append(u.GetFinalizers(), finalizer))
		_, err := c.dynamic.Resource(chartsResource).Namespace(ns).Update(ctx, u, metav1.UpdateOptions{})
		return err // its update comes back through the informer
	}

	ch, err := c.dirs.loadChart(spec)
	if err != nil {
		return c.report(ctx, u, hc, corev1.EventTypeWarning, "ChartFailed", err)
	}
	vals, err := values(ctx, c.client, hc, cfg)
	if err != nil {
		return c.report(ctx, u, hc, corev1.EventTypeWarning, "ChartFailed", err)
	}
	config, err := configDigest(ch, vals, target)
	if err != nil {
		return err
	}
	last, err := ops.last()
	if err != nil {
		return err
	}
	if last != nil && last.Labels()[configLabel] == config {
		switch common.Status(last.Status()) {
		case common.StatusDeployed:
			return c.report(ctx, u, hc, "", "Deployed", nil)
		case common.StatusFailed:
			if spec.FailurePolicy != FailurePolicyReinstall {
				return nil // left failed until something changes, as asked
			}
		}
	}
	return c.deploy(ctx, u, hc, ops, last, ch, vals, config)
}

// deploy installs or upgrades the release, whichever it needs.
func (c *Controller) deploy(ctx context.Context, u *unstructured.Unstructured, hc *HelmChart, ops *releaseOps, last release.Accessor, ch loadedChart, vals map[string]any, config string) error {
	install := last == nil
	if last != nil {
		switch common.Status(last.Status()) {
		case common.StatusUninstalled:
			install = true
		case common.StatusPendingInstall, common.StatusUninstalling:
			install = true // a stopped server left it half made
		case common.StatusPendingUpgrade, common.StatusPendingRollback:
			if err := ops.markFailed(); err != nil {
				return err
			}
		}
		if common.Status(last.Status()) == common.StatusFailed && ops.spec.FailurePolicy == FailurePolicyReinstall {
			install = true
		}
		if _, err := ops.cfg.Releases.Deployed(ops.name); err != nil {
			install = true // nothing deployed to upgrade from
		}
		if install {
			if err := ops.uninstall(); err != nil {
				return c.report(ctx, u, hc, corev1.EventTypeWarning, "UninstallFailed", err)
			}
		}
	}
	reason, err := "Installed", error(nil)
	if install {
		err = ops.install(ctx, ch, vals, config)
	} else {
		reason = "Upgraded"
		err = ops.upgrade(ctx, ch, vals, config)
	}
	if err != nil {
		failed := map[string]string{"Installed": "InstallFailed", "Upgraded": "UpgradeFailed"}[reason]
		if rerr := c.report(ctx, u, hc, corev1.EventTypeWarning, failed, err); rerr != nil {
			return rerr
		}
		if ops.spec.FailurePolicy == FailurePolicyReinstall {
			return fmt.Errorf("%s: %w", failed, err)
		}
		return nil
	}
	klog.InfoS("Helm release deployed", "helmchart", klog.KObj(hc), "release", ops.namespace+"/"+ops.name, "action", reason)
	c.event(ctx, hc, corev1.EventTypeNormal, reason, fmt.Sprintf("release %s/%s %s", ops.namespace, ops.name, strings.ToLower(reason)))
	return c.report(ctx, u, hc, "", "Deployed", nil)
}

// remove uninstalls a deleted HelmChart's release, then lets it go.
func (c *Controller) remove(ctx context.Context, u *unstructured.Unstructured, hc *HelmChart, ops *releaseOps) error {
	if !slices.Contains(hc.Finalizers, finalizer) {
		return nil
	}
	if err := ops.uninstall(); err != nil {
		c.event(ctx, hc, corev1.EventTypeWarning, "UninstallFailed", err.Error())
		return err
	}
	c.event(ctx, hc, corev1.EventTypeNormal, "Uninstalled", fmt.Sprintf("release %s/%s uninstalled", ops.namespace, ops.name))
	u = u.DeepCopy()
	u.SetFinalizers(slices.DeleteFunc(u.GetFinalizers(), func(f string) bool { return f == finalizer }))
	_, err := c.dynamic.Resource(chartsResource).Namespace(hc.Namespace).Update(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// config is the HelmChartConfig of a chart, nil if there is none.
func (c *Controller) config(ns, name string) (*HelmChartConfig, error) {
	obj, err := c.configs.ByNamespace(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cfg := &HelmChartConfig{}
	if err := fromUnstructured(obj.(*unstructured.Unstructured), cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// effectiveSpec is a HelmChart's spec with its defaults, and with the
// policies its HelmChartConfig overrides.
func effectiveSpec(hc *HelmChart, cfg *HelmChartConfig) ChartSpec {
	spec := hc.Spec
	if cfg != nil {
		if cfg.Spec.FailurePolicy != "" {
			spec.FailurePolicy = cfg.Spec.FailurePolicy
		}
		if cfg.Spec.ServerSide != "" {
			spec.ServerSide = cfg.Spec.ServerSide
		}
		if cfg.Spec.ForceConflicts != nil {
			spec.ForceConflicts = *cfg.Spec.ForceConflicts
		}
	}
	if spec.FailurePolicy == "" {
		spec.FailurePolicy = FailurePolicyReinstall
	}
	if spec.Driver == "" {
		spec.Driver = "secret"
	}
	return spec
}

// configDigest identifies what a release is made from: the chart's bytes,
// the merged values and the namespace. It is a label value, so 32 hex
// digits (128 bits) of a sha256.
func configDigest(ch loadedChart, vals map[string]any, namespace string) (string, error) {
	data, err := json.Marshal(struct {
		Chart     string         `json:"chart"`
		Values    map[string]any `json:"values"`
		Namespace string         `json:"namespace"`
	}{ch.digest, vals, namespace})
	if err != nil {
		return "", fmt.Errorf("the HelmChart's values: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16]), nil
}
