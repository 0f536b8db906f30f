// Package localpath is the node's local storage provisioner: for a claim of
// the local-path StorageClass bound to this node (WaitForFirstConsumer), it
// makes a directory under the node's storage path and a hostPath volume
// pinned to the node; when the volume is released with reclaim policy
// Delete, it removes the directory. The controller machinery is upstream's
// sig-storage-lib-external-provisioner; this is the k3s local-path idea run
// inside each node's agent rather than as another image.
package localpath

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// Provisioner is the provisioner name the local-path StorageClass names.
const Provisioner = "skiff.dev/local-path"

// nodeAnnotation records which node holds a volume's directory.
const nodeAnnotation = "skiff.dev/local-path-node"

type provisioner struct {
	node string
	root string
}

// Run provisions and deletes this node's local volumes until ctx ends.
func Run(ctx context.Context, client kubernetes.Interface, node, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("creating the local storage path %s: %w", root, err)
	}
	p := &provisioner{node: node, root: root}
	pc := controller.NewProvisionController(ctx, client, Provisioner, p,
		// Each node runs its own provisioner for its own volumes, so there
		// is nothing to elect.
		controller.LeaderElection(false),
	)
	pc.Run(ctx)
	return nil
}

func (p *provisioner) Provision(_ context.Context, opts controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	if opts.SelectedNodeName == "" {
		return nil, controller.ProvisioningFinished, errors.New("the local-path class needs volumeBindingMode WaitForFirstConsumer, so the claim is placed with its pod's node")
	}
	if opts.SelectedNodeName != p.node {
		return nil, controller.ProvisioningFinished, &controller.IgnoredError{Reason: "volume belongs to node " + opts.SelectedNodeName}
	}
	pvc := opts.PVC
	dir := filepath.Join(p.root, fmt.Sprintf("%s_%s_%s", opts.PVName, pvc.Namespace, pvc.Name))
	// World-writable, as k3s's local-path makes them: the pod's user is
	// not known here.
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	klog.InfoS("Provisioned local volume", "pv", opts.PVName, "claim", klog.KObj(pvc), "path", dir)
	hostPathType := corev1.HostPathDirectoryOrCreate
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: opts.PVName, Annotations: map[string]string{nodeAnnotation: p.node}},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: *opts.StorageClass.ReclaimPolicy,
			AccessModes:                   pvc.Spec.AccessModes,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{p.node},
				}}}},
			}},
		},
	}, controller.ProvisioningFinished, nil
}

func (p *provisioner) Delete(_ context.Context, pv *corev1.PersistentVolume) error {
	if pv.Annotations[nodeAnnotation] != p.node {
		return &controller.IgnoredError{Reason: "volume belongs to node " + pv.Annotations[nodeAnnotation]}
	}
	if pv.Spec.HostPath == nil {
		return &controller.IgnoredError{Reason: "not a local-path volume"}
	}
	dir := filepath.Clean(pv.Spec.HostPath.Path)
	// Only ever a directory of this provisioner's own making.
	if filepath.Dir(dir) != filepath.Clean(p.root) || !strings.HasPrefix(filepath.Base(dir), pv.Name+"_") {
		return fmt.Errorf("refusing to delete %s: not a local-path directory under %s", dir, p.root)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	klog.InfoS("Deleted local volume", "pv", pv.Name, "path", dir)
	return nil
}
