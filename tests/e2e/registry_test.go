package e2e

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/skiff-dev/skiff/tests/harness"
)

// mirroredRegistry is a registry no host resolves: an image named there
// can only come through the mirror registries.yaml names.
const mirroredRegistry = "mirror-only.skiff.test"

// newRegistry starts a registry in the test's process, stopped when the
// test ends, and returns it with the path for a registries.yaml beside it.
func newRegistry(t *testing.T) (*harness.Registry, string) {
	t.Helper()
	dir := t.TempDir()
	reg, err := harness.NewRegistry(filepath.Join(dir, "registry"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg, filepath.Join(dir, "registries.yaml")
}

// startMirror starts a registry and writes the registries.yaml
// (--private-registry) that mirrors mirroredRegistry to it.
func startMirror(t *testing.T) (*harness.Registry, string) {
	t.Helper()
	reg, path := newRegistry(t)
	if err := reg.WriteMirrors(path, mirroredRegistry); err != nil {
		t.Fatal(err)
	}
	return reg, path
}

// checkMirroredPull pushes the busybox archive to the mirror and runs a pod
// that pulls it (imagePullPolicy Always) by its name on mirroredRegistry.
//
// The pushed image gets a label, so that it is not the image other tests
// run with imagePullPolicy Never: the kubelet records which images it
// pulled (in /var/lib/kubelet, which outlives a test), and refuses
// (ErrImageNeverPull) a recorded image under a name it did not pull it by.
func checkMirroredPull(t *testing.T, ctx context.Context, c kubernetes.Interface, reg *harness.Registry, archive string) {
	t.Helper()
	image := mirroredRegistry + "/tests/busybox:mirrored"
	if err := reg.PushArchive(archive, image, map[string]string{"skiff.test/pulled-from": "mirror"}); err != nil {
		t.Fatal(err)
	}
	before := reg.Manifests.Load()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "mirrored"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name: "c", Image: image, ImagePullPolicy: corev1.PullAlways, Command: []string{"sleep", "3600"},
			}},
		},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodRunning(t, ctx, c, "default", pod.Name)
	if reg.Manifests.Load() == before {
		t.Errorf("pod %s runs, but the mirror served no manifest", image)
	}
	if err := c.CoreV1().Pods("default").Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}
