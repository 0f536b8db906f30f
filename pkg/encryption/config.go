// Package encryption keeps Secrets encrypted at rest: the apiserver's
// encryption configuration (secretbox, 0600, k3s's path), the rewrite that
// stores every Secret with the current key, and key rotation.
package encryption

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/skiff-dev/skiff/pkg/pki"
)

// EnsureConfig makes the apiserver's encryption configuration at path once:
// Secrets encrypted with secretbox under a new random key, identity last
// so that Secrets written before encryption still read. It returns the
// name of the key new writes use.
func EnsureConfig(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return CurrentKey(path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading the encryption configuration: %w", err)
	}
	key, err := newKey()
	if err != nil {
		return "", err
	}
	if err := write(path, []apiserverv1.Key{key}); err != nil {
		return "", err
	}
	klog.InfoS("Secrets are encrypted at rest", "provider", "secretbox", "key", key.Name, "config", path)
	return key.Name, nil
}

// CurrentKey names the key new writes use in the configuration at path.
func CurrentKey(path string) (string, error) {
	keys, err := read(path)
	if err != nil {
		return "", err
	}
	return keys[0].Name, nil
}

// Rotate puts a new key first in the configuration at path, keeping the
// others after it so that Secrets not yet rewritten still read, and
// returns its name.
func Rotate(path string) (string, error) {
	keys, err := read(path)
	if err != nil {
		return "", err
	}
	key, err := newKey()
	if err != nil {
		return "", err
	}
	return key.Name, write(path, append([]apiserverv1.Key{key}, keys...))
}

// DropOldKeys keeps only the current key in the configuration at path,
// once every Secret is written with it, and returns the names dropped.
func DropOldKeys(path string) ([]string, error) {
	keys, err := read(path)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, k := range keys[1:] {
		dropped = append(dropped, k.Name)
	}
	return dropped, write(path, keys[:1])
}

func newKey() (apiserverv1.Key, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return apiserverv1.Key{}, err
	}
	// Names must differ between rotations within a second.
	suffix := make([]byte, 2)
	rand.Read(suffix)
	return apiserverv1.Key{
		Name:   fmt.Sprintf("skiff-%s-%x", time.Now().UTC().Format("20060102T150405Z"), suffix),
		Secret: base64.StdEncoding.EncodeToString(secret),
	}, nil
}

// read returns the secretbox keys of skiff's configuration at path, the
// current one first.
func read(path string) ([]apiserverv1.Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the encryption configuration: %w", err)
	}
	var cfg apiserverv1.EncryptionConfiguration
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w (restore it from a backup: without it no Secret can be read)", path, err)
	}
	for _, r := range cfg.Resources {
		for _, p := range r.Providers {
			if p.Secretbox != nil && len(p.Secretbox.Keys) > 0 {
				return p.Secretbox.Keys, nil
			}
			return nil, fmt.Errorf("%s: the first provider is not secretbox: skiff manages only its own configuration", path)
		}
	}
	return nil, fmt.Errorf("%s has no providers", path)
}

// write replaces the configuration at path (0600) with keys, identity last.
func write(path string, keys []apiserverv1.Key) error {
	cfg := apiserverv1.EncryptionConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiserver.config.k8s.io/v1", Kind: "EncryptionConfiguration"},
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{"secrets"},
			Providers: []apiserverv1.ProviderConfiguration{
				{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: keys}},
				{Identity: &apiserverv1.IdentityConfiguration{}},
			},
		}},
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := pki.WriteFileIfChanged(path, data, 0o600); err != nil {
		return fmt.Errorf("writing the encryption configuration %s: %w", path, err)
	}
	return nil
}
