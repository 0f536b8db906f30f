package encryption

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	corev1apply "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
)

// StateName is the kube-system ConfigMap that records which key every
// Secret has been rewritten with.
const StateName = "skiff-secrets-encryption"

// State reads what StateName records: the key, how many Secrets and when;
// nil when nothing was rewritten yet.
func State(ctx context.Context, client kubernetes.Interface) (map[string]string, error) {
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, StateName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the secrets encryption state: %w", err)
	}
	return cm.Data, nil
}

// RecordState records that n Secrets were rewritten with key.
func RecordState(ctx context.Context, client kubernetes.Interface, key string, n int) error {
	apply := corev1apply.ConfigMap(StateName, metav1.NamespaceSystem).WithData(map[string]string{
		"key": key, "secrets": fmt.Sprint(n), "rewritten": time.Now().UTC().Format(time.RFC3339),
	})
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Apply(ctx, apply, metav1.ApplyOptions{FieldManager: "skiff", Force: true}); err != nil {
		return fmt.Errorf("recording the secrets encryption state: %w", err)
	}
	return nil
}

// RewriteSecrets writes every Secret back unchanged, page by page, and
// calls progress after each 100 and at the end with how many are done and
// about how many there are. The apiserver stores an unchanged Secret again
// only when it was read with a provider or key other than the first (it
// calls that stale): exactly those not yet encrypted with the current key.
func RewriteSecrets(ctx context.Context, client kubernetes.Interface, progress func(done, total int)) (int, error) {
	secrets := client.CoreV1().Secrets(metav1.NamespaceAll)
	n, total := 0, 0
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := secrets.List(ctx, opts)
		if err != nil {
			return n, fmt.Errorf("listing Secrets to rewrite them: %w", err)
		}
		if total = n + len(list.Items); list.RemainingItemCount != nil {
			total += int(*list.RemainingItemCount)
		}
		for i := range list.Items {
			if err := rewrite(ctx, client, &list.Items[i]); err != nil {
				return n, err
			}
			if n++; n%100 == 0 {
				progress(n, total)
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			if n%100 != 0 {
				progress(n, n)
			}
			return n, nil
		}
	}
}

func rewrite(ctx context.Context, client kubernetes.Interface, secret *corev1.Secret) error {
	_, err := client.CoreV1().Secrets(secret.Namespace).Update(ctx, secret, metav1.UpdateOptions{})
	switch {
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil // deleted, or written anew (and so with the current key) meanwhile
	case err != nil:
		return fmt.Errorf("rewriting Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return nil
}

// WaitLoaded waits until the apiserver reports (in its metrics, as
// apiserver_encryption_config_controller_last_config_info) that it runs
// with the configuration now at path. It reloads the file about once a
// minute.
func WaitLoaded(ctx context.Context, client kubernetes.Interface, path string) error {
	hash, err := encryptionconfig.GetEncryptionConfigHash(path)
	if err != nil {
		return err
	}
	want := fmt.Sprintf("hash=%q", hash)
	err = wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		metrics, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return false, nil
		}
		for s := bufio.NewScanner(bytes.NewReader(metrics)); s.Scan(); {
			if line := s.Text(); strings.HasPrefix(line, "apiserver_encryption_config_controller_last_config_info{") && strings.Contains(line, want) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("the apiserver did not load %s within 3 minutes: %w; is it running with this data dir?", path, err)
	}
	return nil
}
