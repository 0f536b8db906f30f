package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// DefaultPrivateRegistry is where a node looks for its registries.yaml
// (k3s: /etc/rancher/k3s/registries.yaml). It may be absent.
const DefaultPrivateRegistry = "/etc/skiff/registries.yaml"

// Registries is a node's registries.yaml, in k3s's format, so that a k3s
// user's file works unchanged: mirrors of image registries, and the TLS
// settings and credentials to reach a registry or mirror.
type Registries struct {
	// Mirrors maps a registry's name (docker.io, registry.k8s.io,
	// 192.0.2.1:5000, or "*" for any registry without its own entry) to the
	// endpoints tried, in order, before the registry itself.
	Mirrors map[string]Mirror `json:"mirrors,omitempty"`
	// Configs maps a registry's or endpoint's host[:port] to how to reach it.
	Configs map[string]RegistryConfig `json:"configs,omitempty"`
}

// Mirror lists a registry's mirrors as URLs; one without a scheme is https.
type Mirror struct {
	Endpoints []string `json:"endpoint,omitempty"`
}

// RegistryConfig is how to reach one registry host.
type RegistryConfig struct {
	Auth *RegistryAuth `json:"auth,omitempty"`
	TLS  *RegistryTLS  `json:"tls,omitempty"`
}

// RegistryAuth holds a registry's credentials: a user name and password, a
// base64 user:password (Auth), or an identity token.
type RegistryAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identity_token,omitempty"`
}

// RegistryTLS names the files that verify a registry and identify the node
// to it.
type RegistryTLS struct {
	CAFile             string `json:"ca_file,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// LoadRegistries reads and checks the registries.yaml at path. The default
// path may be absent (no mirrors, nothing configured: nil); a path the
// user named must exist.
func LoadRegistries(path string) (*Registries, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && path == DefaultPrivateRegistry {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading --private-registry: %w", err)
	}
	var r Registries
	if err := yaml.UnmarshalStrict(data, &r); err != nil {
		return nil, fmt.Errorf("--private-registry %s: %w", path, err)
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("--private-registry %s: %w", path, err)
	}
	return &r, nil
}

func (r *Registries) validate() error {
	for name, m := range r.Mirrors {
		if name != "*" && !isHostPort(name) {
			return fmt.Errorf("mirrors: %q is not a registry's host[:port] (or \"*\")", name)
		}
		for _, e := range m.Endpoints {
			if _, err := EndpointURL(e); err != nil {
				return fmt.Errorf("mirrors: %s: %w", name, err)
			}
		}
	}
	for host, c := range r.Configs {
		if !isHostPort(host) {
			return fmt.Errorf("configs: %q is not a registry's host[:port]", host)
		}
		if c.TLS == nil {
			continue
		}
		if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
			return fmt.Errorf("configs: %s: tls needs both cert_file and key_file, or neither", host)
		}
		for _, f := range []string{c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile} {
			if f == "" {
				continue
			}
			if _, err := os.Stat(f); err != nil {
				return fmt.Errorf("configs: %s: tls: %w", host, err)
			}
		}
	}
	return nil
}

// EndpointURL parses a mirror's endpoint; one without a scheme is https,
// as in k3s.
func EndpointURL(endpoint string) (*url.URL, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q is not a URL such as https://mirror.example.com:5000", endpoint)
	}
	return u, nil
}

// isHostPort is true for a host name or IP address with an optional port,
// as image references name registries.
func isHostPort(s string) bool {
	u, err := url.Parse("https://" + s)
	return err == nil && u.Host == s && u.Hostname() != ""
}
