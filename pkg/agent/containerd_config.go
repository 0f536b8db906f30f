package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/template"

	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// containerdTemplate is containerd's configuration (format version 3, which
// containerd v2 reads). A user who needs something else puts a template of
// their own beside the rendered file as config.toml.tmpl (as k3s users do);
// it gets the same fields.
const containerdTemplate = `# Rendered by skiff at every start; edit config.toml.tmpl instead.
version = 3
root = "{{ .Root }}"
state = "{{ .State }}"

# Snapshotters a node of skiff does not use: not loading them saves memory
# and start time.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{{ .Socket }}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{{ .SandboxImage }}"
  # Mirrors and TLS per registry, from registries.yaml (--private-registry).
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{{ .RegistryHostsDir }}"
{{- range .RegistryAuths }}
    [plugins.'io.containerd.cri.v1.images'.registry.configs.{{ quote .Host }}.auth]
      username = {{ quote .Username }}
      password = {{ quote .Password }}
      auth = {{ quote .Auth }}
      identitytoken = {{ quote .IdentityToken }}
{{- end }}

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # Set when the process lacks CAP_SYS_RESOURCE (containers, LXC and some
  # sandboxes): runc could not lower a pod's oom_score_adj and every pod
  # would fail to start.
  restrict_oom_score_adj = {{ .RestrictOOMScoreAdj }}
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{{ .BinDir }}"]
    conf_dir = "{{ .CNIConfDir }}"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{{ .BinDir }}/runc"
        SystemdCgroup = {{ .SystemdCgroup }}
`

// containerdValues are the fields a containerd template can use.
type containerdValues struct {
	Root, State, Socket  string
	BinDir, CNIConfDir   string
	SandboxImage         string
	SystemdCgroup        bool
	RestrictOOMScoreAdj  bool
	NodeName, ClusterDNS string
	// RegistryHostsDir is containerd's config_path; RegistryAuths the
	// credentials of registries.yaml (rendered with quote).
	RegistryHostsDir string
	RegistryAuths    []registryAuth
}

// writeContainerdConfig renders containerd's config.toml from the user's
// config.toml.tmpl when there is one, else from skiff's template.
func writeContainerdConfig(cfg *config.Agent, v containerdValues) (string, error) {
	dir := cfg.ContainerdConfigDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	text, source := containerdTemplate, "built-in"
	user := filepath.Join(dir, "config.toml.tmpl")
	switch data, err := os.ReadFile(user); {
	case err == nil:
		text, source = string(data), user
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("reading the containerd template %s: %w", user, err)
	}
	tmpl, err := template.New(source).Option("missingkey=error").
		Funcs(template.FuncMap{"quote": quote}).Parse(text)
	if err != nil {
		return "", fmt.Errorf("containerd template %s: %w", source, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, v); err != nil {
		return "", fmt.Errorf("containerd template %s: %w", source, err)
	}
	path := filepath.Join(dir, "config.toml")
	if err := pki.WriteFileIfChanged(path, out.Bytes(), 0o600); err != nil {
		return "", err
	}
	klog.InfoS("Wrote containerd configuration", "path", path, "template", source)
	return path, nil
}
