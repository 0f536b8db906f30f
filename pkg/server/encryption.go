package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	corev1apply "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/skiff-dev/skiff/pkg/pki"
)

// EncryptionStateName is the kube-system ConfigMap that records which key
// every Secret has been rewritten with.
const EncryptionStateName = "skiff-secrets-encryption"

// ensureEncryptionConfig makes the apiserver's encryption configuration
// (0600) once: Secrets encrypted with secretbox under a new random key,
// identity last so that Secrets written before encryption still read.
// It returns the name of the key new writes use.
func ensureEncryptionConfig(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil {
		return encryptionKeyName(data, path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading the encryption configuration: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	name := "skiff-" + time.Now().UTC().Format("20060102T150405Z")
	cfg := apiserverv1.EncryptionConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiserver.config.k8s.io/v1", Kind: "EncryptionConfiguration"},
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{"secrets"},
			Providers: []apiserverv1.ProviderConfiguration{
				{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{{Name: name, Secret: base64.StdEncoding.EncodeToString(secret)}}}},
				{Identity: &apiserverv1.IdentityConfiguration{}},
			},
		}},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	if err := pki.WriteFileIfChanged(path, data, 0o600); err != nil {
		return "", fmt.Errorf("writing the encryption configuration: %w", err)
	}
	klog.InfoS("Secrets are encrypted at rest", "provider", "secretbox", "key", name, "config", path)
	return name, nil
}

// EncryptionKey names the key new writes use in the encryption
// configuration at path.
func EncryptionKey(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return encryptionKeyName(data, path)
}

// encryptionKeyName is the key new writes use: the first provider's first.
func encryptionKeyName(data []byte, path string) (string, error) {
	var cfg apiserverv1.EncryptionConfiguration
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("%s: %w (restore it from a backup: without it no Secret can be read)", path, err)
	}
	for _, r := range cfg.Resources {
		for _, p := range r.Providers {
			if p.Secretbox != nil && len(p.Secretbox.Keys) > 0 {
				return p.Secretbox.Keys[0].Name, nil
			}
			return "", fmt.Errorf("%s: the first provider is not secretbox: skiff manages only its own configuration", path)
		}
	}
	return "", fmt.Errorf("%s has no providers", path)
}

// encryptSecrets rewrites every Secret once per key, so that those written
// before encryption are stored encrypted, and records it in the
// EncryptionStateName ConfigMap. The apiserver writes an unchanged Secret
// back only when it was read with a provider other than the first (it
// calls that stale): exactly those that need it.
func (s *Server) encryptSecrets(ctx context.Context) error {
	cms := s.admin.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	state, err := cms.Get(ctx, EncryptionStateName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading the secrets encryption state: %w", err)
	}
	if err == nil && state.Data["key"] == s.encryptionKey {
		<-ctx.Done()
		return nil
	}
	start := time.Now()
	n, err := s.rewriteSecrets(ctx)
	if err != nil {
		return err
	}
	apply := corev1apply.ConfigMap(EncryptionStateName, metav1.NamespaceSystem).WithData(map[string]string{
		"key": s.encryptionKey, "secrets": fmt.Sprint(n), "rewritten": time.Now().UTC().Format(time.RFC3339),
	})
	if _, err := cms.Apply(ctx, apply, metav1.ApplyOptions{FieldManager: "skiff", Force: true}); err != nil {
		return fmt.Errorf("recording the secrets encryption state: %w", err)
	}
	klog.InfoS("Every Secret is encrypted", "key", s.encryptionKey, "secrets", n, "took", time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	return nil
}

// rewriteSecrets writes every Secret back unchanged, page by page, with a
// progress line every 100.
func (s *Server) rewriteSecrets(ctx context.Context) (int, error) {
	secrets := s.admin.CoreV1().Secrets(metav1.NamespaceAll)
	n := 0
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := secrets.List(ctx, opts)
		if err != nil {
			return n, fmt.Errorf("listing Secrets to encrypt them: %w", err)
		}
		for i := range list.Items {
			if err := rewrite(ctx, s, &list.Items[i]); err != nil {
				return n, err
			}
			if n++; n%100 == 0 {
				klog.InfoS("Encrypting Secrets", "done", n)
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return n, nil
		}
	}
}

func rewrite(ctx context.Context, s *Server, secret *corev1.Secret) error {
	_, err := s.admin.CoreV1().Secrets(secret.Namespace).Update(ctx, secret, metav1.UpdateOptions{})
	switch {
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil // deleted, or written anew (and so encrypted) meanwhile
	case err != nil:
		return fmt.Errorf("rewriting Secret %s/%s encrypted: %w", secret.Namespace, secret.Name, err)
	}
	return nil
}
