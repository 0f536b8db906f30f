package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	hostsconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/pelletier/go-toml/v2"

	"github.com/skiff-dev/skiff/pkg/config"
)

// TestRegistryHosts renders a registries.yaml and reads the result back
// with containerd's own hosts.toml code, as its image pulls do.
func TestRegistryHosts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs.d")
	r := &config.Registries{
		Mirrors: map[string]config.Mirror{
			"registry.k8s.io": {Endpoints: []string{"http://127.0.0.1:5000"}},
			"*":               {Endpoints: []string{"mirror.example.com:5443"}},
		},
		Configs: map[string]config.RegistryConfig{
			"mirror.example.com:5443": {TLS: &config.RegistryTLS{InsecureSkipVerify: true}},
			"private.example.com":     {TLS: &config.RegistryTLS{CAFile: "/etc/ssl/private-ca.crt"}},
		},
	}
	// A file left from an earlier registries.yaml goes.
	stale := filepath.Join(dir, "old.example.com", "hosts.toml")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeRegistryHosts(dir, r); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale hosts.toml kept: %v", err)
	}

	hosts := hostsconfig.ConfigureHosts(context.Background(), hostsconfig.HostOptions{HostDir: hostsconfig.HostDirFromRoot(dir)})
	for registry, want := range map[string][]string{
		"registry.k8s.io": {"http://127.0.0.1:5000/v2", "https://registry.k8s.io/v2"},
		"docker.io":       {"https://mirror.example.com:5443/v2", "https://registry-1.docker.io/v2"},
	} {
		got, err := hosts(registry)
		if err != nil {
			t.Fatalf("%s: %v", registry, err)
		}
		var urls []string
		for _, h := range got {
			urls = append(urls, h.Scheme+"://"+h.Host+h.Path)
		}
		if strings.Join(urls, " ") != strings.Join(want, " ") {
			t.Errorf("%s is pulled from %v, want %v", registry, urls, want)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "private.example.com", "hosts.toml"))
	if err != nil || !strings.Contains(string(data), `ca = "/etc/ssl/private-ca.crt"`) {
		t.Errorf("private registry's hosts.toml: %q, %v", data, err)
	}
}

// TestRegistryAuthInConfig: credentials reach containerd's config.toml,
// quoted so that any password survives.
func TestRegistryAuthInConfig(t *testing.T) {
	cfg := testConfig(t)
	password := `p"a\ss` + "\nword"
	auths := registryAuths(&config.Registries{Configs: map[string]config.RegistryConfig{
		"private.example.com": {Auth: &config.RegistryAuth{Username: "u", Password: password}},
		"other.example.com":   {},
	}})
	path, err := writeContainerdConfig(cfg, containerdValues{RegistryHostsDir: "/h", RegistryAuths: auths})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var parsed struct {
		Plugins map[string]struct {
			Registry struct {
				ConfigPath string `toml:"config_path"`
				Configs    map[string]struct {
					Auth struct{ Username, Password string }
				}
			}
		}
	}
	if err := toml.Unmarshal(data, &parsed); err != nil {
		t.Fatalf("rendered config is not TOML: %v\n%s", err, data)
	}
	reg := parsed.Plugins["io.containerd.cri.v1.images"].Registry
	if reg.ConfigPath != "/h" || len(reg.Configs) != 1 || reg.Configs["private.example.com"].Auth.Password != password {
		t.Errorf("registry section: %+v", reg)
	}
}
