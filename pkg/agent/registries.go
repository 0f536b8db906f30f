package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/config"
)

// registryAuth is one registry's credentials as containerd's CRI reads
// them (registry.configs."host".auth in config.toml, which containerd also
// honours beside config_path).
type registryAuth struct {
	Host                                    string
	Username, Password, Auth, IdentityToken string
}

// registryAuths lists registries.yaml's credentials by host, in a fixed
// order so that the rendered config only changes when they do.
func registryAuths(r *config.Registries) []registryAuth {
	if r == nil {
		return nil
	}
	var out []registryAuth
	for _, host := range slices.Sorted(maps.Keys(r.Configs)) {
		if a := r.Configs[host].Auth; a != nil {
			out = append(out, registryAuth{host, a.Username, a.Password, a.Auth, a.IdentityToken})
		}
	}
	return out
}

// writeRegistryHosts renders registries.yaml as containerd's hosts
// directory: dir/<registry>/hosts.toml for each mirrored or configured
// registry, _default for "*". The directory is rewritten at every start,
// so an entry removed from registries.yaml is gone.
func writeRegistryHosts(dir string, r *config.Registries) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing the registry hosts directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	names := slices.Sorted(maps.Keys(r.Mirrors))
	for host := range r.Configs {
		if _, ok := r.Mirrors[host]; !ok {
			names = append(names, host)
		}
	}
	for _, name := range names {
		text, err := hostsTOML(name, r)
		if err != nil {
			return err
		}
		sub := name
		if name == "*" {
			sub = "_default"
		}
		path := filepath.Join(dir, sub, "hosts.toml")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, text, 0o644); err != nil {
			return err
		}
		klog.InfoS("Wrote registry hosts", "registry", name, "path", path)
	}
	return nil
}

// hostsTOML is one registry's hosts.toml: its mirrors first, each with the
// TLS settings configs names for its host, then the registry itself (the
// default server, left implicit so containerd picks it as without a file),
// with its own TLS settings.
func hostsTOML(name string, r *config.Registries) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Rendered by skiff from registries.yaml at every start.\n")
	if name != "*" {
		writeTLS(&b, "", r.Configs[name].TLS)
	}
	for _, e := range r.Mirrors[name].Endpoints {
		u, err := config.EndpointURL(e)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\n[host.%s]\n", quote(u.String()))
		b.WriteString(`  capabilities = ["pull", "resolve"]` + "\n")
		writeTLS(&b, "  ", r.Configs[u.Host].TLS)
	}
	return b.Bytes(), nil
}

func writeTLS(b *bytes.Buffer, indent string, t *config.RegistryTLS) {
	if t == nil {
		return
	}
	if t.CAFile != "" {
		fmt.Fprintf(b, "%sca = %s\n", indent, quote(t.CAFile))
	}
	if t.CertFile != "" {
		fmt.Fprintf(b, "%sclient = [[%s, %s]]\n", indent, quote(t.CertFile), quote(t.KeyFile))
	}
	if t.InsecureSkipVerify {
		fmt.Fprintf(b, "%sskip_verify = true\n", indent)
	}
}

// quote writes s as a TOML basic string: JSON's string escapes are all
// valid there.
func quote(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
