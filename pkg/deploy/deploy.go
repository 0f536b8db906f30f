// Package deploy is the add-on deployer: skiff's embedded manifests are
// rendered into <data-dir>/server/manifests at start, and every *.yaml,
// *.yml or *.json file there (skiff's or the user's) is applied with
// server-side apply. A changed file is applied again; objects a file no
// longer holds, or that belonged to a removed file, are deleted. A file with
// a <file>.skip beside it is left alone (as in k3s).
package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/internal/events"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// FieldManager owns the fields skiff applies.
const FieldManager = "skiff"

// Label names the manifest file an object came from.
const Label = "skiff.dev/manifest"

// resync is how often every file is applied again even without a change on
// disk, so an object deleted or edited by hand returns to its manifest.
const resync = time.Minute

// Deployer applies the files of one directory.
type Deployer struct {
	Dir       string
	StatePath string // records which objects each file made, for pruning
	Client    kubernetes.Interface
	Dynamic   dynamic.Interface
	mapper    *restmapper.DeferredDiscoveryRESTMapper

	applied map[string]fileState // by file name
	// broken holds the hash of files that could not be read as
	// manifests, so each content is reported once.
	broken map[string]string
}

type fileState struct {
	Hash    string      `json:"hash"`
	Objects []objectRef `json:"objects"`
}

type objectRef struct {
	Group     string `json:"group"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (r objectRef) String() string {
	return strings.TrimPrefix(r.Group+"/", "/") + r.Kind + " " + strings.TrimPrefix(r.Namespace+"/", "/") + r.Name
}

// New makes a deployer for dir.
func New(dir, statePath string, client kubernetes.Interface, dyn dynamic.Interface) *Deployer {
	return &Deployer{
		Dir: dir, StatePath: statePath, Client: client, Dynamic: dyn,
		mapper:  restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery())),
		applied: map[string]fileState{},
		broken:  map[string]string{},
	}
}

// Run applies the directory now, then whenever it changes and every resync,
// until ctx ends.
func (d *Deployer) Run(ctx context.Context) error {
	if data, err := os.ReadFile(d.StatePath); err == nil {
		if err := json.Unmarshal(data, &d.applied); err != nil {
			klog.InfoS("Ignoring unreadable manifest record; nothing will be pruned until files change", "path", d.StatePath, "err", err)
		}
	}
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", d.Dir, err)
	}
	defer watcher.Close()
	if err := watcher.Add(d.Dir); err != nil {
		return fmt.Errorf("watching %s: %w", d.Dir, err)
	}
	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	force := true
	for {
		d.sync(ctx, force)
		force = false
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			force = true
		case <-watcher.Events:
			// Editors write in several steps: let them finish, then take
			// every event that came meanwhile as one change.
			time.Sleep(200 * time.Millisecond)
			for len(watcher.Events) > 0 {
				<-watcher.Events
			}
		case err := <-watcher.Errors:
			klog.InfoS("Watching the manifests directory", "dir", d.Dir, "err", err)
		}
	}
}

// sync applies files that changed (every file when force) and prunes what
// left them.
func (d *Deployer) sync(ctx context.Context, force bool) {
	files, err := manifestFiles(d.Dir)
	if err != nil {
		klog.ErrorS(err, "Reading the manifests directory", "dir", d.Dir)
		return
	}
	changed := false
	for _, name := range files {
		data, err := os.ReadFile(filepath.Join(d.Dir, name))
		if err != nil {
			continue // removed meanwhile
		}
		hash := contentHash(data)
		if prev, ok := d.applied[name]; ok && prev.Hash == hash && !force {
			continue
		}
		if d.broken[name] == hash {
			continue
		}
		objs, err := decode(data)
		if err != nil {
			d.broken[name] = hash
			d.report(ctx, name, err)
			continue
		}
		delete(d.broken, name)
		refs, err := d.apply(ctx, name, objs)
		if err != nil {
			d.report(ctx, name, err)
			// Applied objects still count, so they are pruned later; the
			// hash is not recorded, so the file is tried again.
			hash = ""
		}
		prev := d.applied[name]
		d.prune(ctx, name, prev.Objects, refs)
		if prev.Hash != hash || !slices.Equal(prev.Objects, refs) {
			changed = true
		}
		d.applied[name] = fileState{Hash: hash, Objects: refs}
	}
	for name := range d.broken {
		if !slices.Contains(files, name) {
			delete(d.broken, name)
		}
	}
	for name, st := range d.applied {
		if !slices.Contains(files, name) {
			klog.InfoS("Manifest removed; deleting its objects", "file", name, "objects", len(st.Objects))
			d.prune(ctx, name, st.Objects, nil)
			delete(d.applied, name)
			changed = true
		}
	}
	if changed {
		d.saveState()
	}
}

// manifestFiles lists the files to apply: *.yaml, *.yml and *.json without
// a .skip beside them.
func manifestFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".skip"); ok {
			skip[name] = true
		}
	}
	var files []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.Type().IsRegular() && (ext == ".yaml" || ext == ".yml" || ext == ".json") && !skip[e.Name()] && !strings.HasPrefix(e.Name(), ".") {
			files = append(files, e.Name())
		}
	}
	return files, nil
}

// apply applies objs in an order where what others need comes first:
// namespaces and CRDs, then the rest.
func (d *Deployer) apply(ctx context.Context, file string, objs []*unstructured.Unstructured) ([]objectRef, error) {
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return applyRank(a) - applyRank(b) })
	var refs []objectRef
	var errs []error
	for _, obj := range objs {
		labels := obj.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[Label] = labelValue(file)
		obj.SetLabels(labels)
		ref, err := d.applyOne(ctx, obj)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err))
			continue
		}
		refs = append(refs, ref)
	}
	if len(errs) == 0 {
		klog.V(2).InfoS("Applied manifest", "file", file, "objects", len(refs))
	}
	return refs, errors.Join(errs...)
}

func applyRank(obj *unstructured.Unstructured) int {
	switch obj.GetKind() {
	case "Namespace", "CustomResourceDefinition":
		return 0
	case "ServiceAccount", "ClusterRole", "Role", "ConfigMap", "Secret", "StorageClass", "PriorityClass":
		return 1
	}
	return 2
}

func (d *Deployer) applyOne(ctx context.Context, obj *unstructured.Unstructured) (objectRef, error) {
	gvk := obj.GroupVersionKind()
	mapping, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		d.mapper.Reset() // a CRD applied just now
		mapping, err = d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return objectRef{}, err
	}
	ref := objectRef{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Name: obj.GetName()}
	var ri dynamic.ResourceInterface = d.Dynamic.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(metav1.NamespaceDefault)
		}
		ref.Namespace = obj.GetNamespace()
		ri = d.Dynamic.Resource(mapping.Resource).Namespace(ref.Namespace)
	}
	data, err := json.Marshal(obj.Object)
	if err != nil {
		return ref, err
	}
	_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
	return ref, err
}

// prune deletes the objects of before that are not in after.
func (d *Deployer) prune(ctx context.Context, file string, before, after []objectRef) {
	for _, ref := range before {
		if slices.Contains(after, ref) {
			continue
		}
		gvk := schema.GroupVersionKind{Group: ref.Group, Version: ref.Version, Kind: ref.Kind}
		mapping, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			klog.InfoS("Cannot prune object whose kind is gone", "file", file, "object", ref, "err", err)
			continue
		}
		var ri dynamic.ResourceInterface = d.Dynamic.Resource(mapping.Resource)
		if ref.Namespace != "" {
			ri = d.Dynamic.Resource(mapping.Resource).Namespace(ref.Namespace)
		}
		policy := metav1.DeletePropagationBackground
		err = ri.Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: &policy})
		if err != nil && !apierrors.IsNotFound(err) {
			klog.ErrorS(err, "Pruning object", "file", file, "object", ref)
			continue
		}
		klog.InfoS("Pruned object", "file", file, "object", ref)
	}
}

// report logs a file's error and records it as a Warning event in
// kube-system, where `kubectl get events -n kube-system` shows it.
func (d *Deployer) report(ctx context.Context, file string, err error) {
	path := filepath.Join(d.Dir, file)
	klog.ErrorS(err, "Applying manifest failed", "file", path)
	events.Record(ctx, d.Client, "skiff-deploy", events.SystemNamespace(), corev1.EventTypeWarning, "ApplyManifestFailed", fmt.Sprintf("%s: %v", path, err))
}

func (d *Deployer) saveState() {
	data, err := json.MarshalIndent(d.applied, "", "  ")
	if err == nil {
		err = pki.WriteFileIfChanged(d.StatePath, data, 0o600)
	}
	if err != nil {
		klog.ErrorS(err, "Recording applied manifests", "path", d.StatePath)
	}
}

// WriteEmbedded renders skiff's add-on templates into dir, skipping (and
// removing the files of) the disabled ones. A rendered file is rewritten
// only when its content changes.
func WriteEmbedded(dir string, templates fs.FS, values any, disabled []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	names, err := fs.Glob(templates, "*.yaml")
	if err != nil {
		return err
	}
	for _, name := range names {
		addon := strings.TrimSuffix(name, ".yaml")
		path := filepath.Join(dir, name)
		if slices.Contains(disabled, addon) {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			continue
		}
		data, err := render(templates, name, values)
		if err != nil {
			return err
		}
		if err := pki.WriteFileIfChanged(path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
