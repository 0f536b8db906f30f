package localpath

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

func TestProvisionAndDelete(t *testing.T) {
	root := t.TempDir()
	p := &provisioner{node: "node-a", root: root}
	reclaim := corev1.PersistentVolumeReclaimDelete
	opts := controller.ProvisionOptions{
		StorageClass: &storagev1.StorageClass{ReclaimPolicy: &reclaim},
		PVName:       "pvc-1",
		PVC: &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "apps"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		},
		SelectedNodeName: "node-b",
	}
	var ignored *controller.IgnoredError
	if _, _, err := p.Provision(context.Background(), opts); !errors.As(err, &ignored) {
		t.Errorf("another node's claim: %v, want ignored", err)
	}
	opts.SelectedNodeName = "node-a"
	pv, _, err := p.Provision(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "pvc-1_apps_data")
	if pv.Spec.HostPath.Path != dir || pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0] != "node-a" {
		t.Errorf("volume: %+v", pv.Spec)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o777 {
		t.Errorf("directory: %v %v", info, err)
	}
	// A volume pointing outside the storage root is never deleted.
	evil := pv.DeepCopy()
	evil.Spec.HostPath.Path = "/etc"
	if err := p.Delete(context.Background(), evil); err == nil {
		t.Error("deleted a path outside the storage root")
	}
	if err := p.Delete(context.Background(), pv); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory remains: %v", err)
	}
}
