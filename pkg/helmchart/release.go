package helmchart

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/release"
	"helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
)

// configLabel holds, on each release, the digest of the chart and values
// it was made from: a release whose label matches is up to date.
const configLabel = "skiff.dev/helmchart-config"

// defaultTimeout bounds a Helm operation's hooks, as k3s's default does.
const defaultTimeout = 5 * time.Minute

// maxHistory bounds the release records (Secrets) an often-upgraded chart
// leaves behind.
const maxHistory = 10

// restGetter gives Helm the controller's client, set to one namespace.
// Helm's own getter (the CLI's flags) would cache discovery on disk in the
// user's home; this one shares the controller's in-memory cache.
type restGetter struct {
	rc        *rest.Config
	namespace string
	discovery discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
}

func (g restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.rc), nil }
func (g restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	return g.discovery, nil
}
func (g restGetter) ToRESTMapper() (meta.RESTMapper, error) { return g.mapper, nil }
func (g restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return clientcmd.NewDefaultClientConfig(clientcmdapi.Config{},
		&clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: g.namespace}})
}

// releaseOps are the Helm actions on one HelmChart's release: its name is
// the HelmChart's, in the target namespace, as in k3s.
type releaseOps struct {
	cfg       *action.Configuration
	name      string
	namespace string
	spec      ChartSpec
	timeout   time.Duration
}

func newReleaseOps(getter restGetter, log slog.Handler, name string, spec ChartSpec) (*releaseOps, error) {
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(log))
	if err := cfg.Init(getter, getter.namespace, spec.Driver); err != nil {
		return nil, fmt.Errorf("helm storage for release %s/%s: %w", getter.namespace, name, err)
	}
	ops := &releaseOps{cfg: cfg, name: name, namespace: getter.namespace, spec: spec, timeout: defaultTimeout}
	if spec.Timeout != nil && spec.Timeout.Duration > 0 {
		ops.timeout = spec.Timeout.Duration
	}
	return ops, nil
}

// last is the release's newest record, nil if there is none.
func (r *releaseOps) last() (release.Accessor, error) {
	rel, err := r.cfg.Releases.Last(r.name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading release %s/%s: %w", r.namespace, r.name, err)
	}
	return release.NewAccessor(rel)
}

func (r *releaseOps) install(ctx context.Context, ch loadedChart, vals map[string]any, config string) error {
	in := action.NewInstall(r.cfg)
	in.ReleaseName, in.Namespace = r.name, r.namespace
	in.CreateNamespace = r.spec.CreateNamespace
	in.Labels = map[string]string{configLabel: config}
	in.Timeout = r.timeout
	in.WaitStrategy = kube.HookOnlyStrategy
	in.TakeOwnership = r.spec.TakeOwnership
	in.ServerSideApply = r.spec.ServerSide != "false"
	in.ForceConflicts = r.spec.ForceConflicts
	_, err := in.RunWithContext(ctx, ch.chart, vals)
	return err
}

func (r *releaseOps) upgrade(ctx context.Context, ch loadedChart, vals map[string]any, config string) error {
	up := action.NewUpgrade(r.cfg)
	up.Namespace = r.namespace
	up.Labels = map[string]string{configLabel: config}
	up.Timeout = r.timeout
	up.WaitStrategy = kube.HookOnlyStrategy
	up.TakeOwnership = r.spec.TakeOwnership
	if r.spec.ServerSide != "" {
		up.ServerSideApply = r.spec.ServerSide
	}
	up.ForceConflicts = r.spec.ForceConflicts
	up.ResetValues = true // the HelmChart's values are the whole truth
	up.MaxHistory = maxHistory
	_, err := up.RunWithContext(ctx, r.name, ch.chart, vals)
	return err
}

// uninstall removes the release; one that is not there is no error.
func (r *releaseOps) uninstall() error {
	un := action.NewUninstall(r.cfg)
	un.IgnoreNotFound = true
	un.Timeout = r.timeout
	un.WaitStrategy = kube.HookOnlyStrategy
	_, err := un.Run(r.name)
	return err
}

// markFailed ends an upgrade or rollback that a stopped server left
// pending, so that the next upgrade may start.
func (r *releaseOps) markFailed() error {
	rel, err := r.cfg.Releases.Last(r.name)
	if err != nil {
		return err
	}
	v1, ok := rel.(*releasev1.Release)
	if !ok {
		return fmt.Errorf("release %s/%s has an unknown record type %T", r.namespace, r.name, rel)
	}
	v1.SetStatus(common.StatusFailed, "interrupted: the server stopped during the operation")
	return r.cfg.Releases.Update(v1)
}
