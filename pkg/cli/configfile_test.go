package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func parsedServerFlags(t *testing.T, args ...string) (*serverFlags, *pflag.FlagSet) {
	t.Helper()
	f := &serverFlags{}
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	f.add(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f, fs
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileSetsFlagsAndCommandLineWins(t *testing.T) {
	path := writeFile(t, `
cluster-cidr: 10.52.0.0/16
https-listen-port: 7443
write-kubeconfig-mode: 0644
tls-san: [a.example, 192.0.2.7]
kube-apiserver-arg:
  - feature-gates=A=true,B=false
  - audit-log-maxage=3
disable-agent: true
`)
	f, fs := parsedServerFlags(t, "--https-listen-port", "8443")
	from := origins{}
	if err := applyConfigFile(fs, path, true, from); err != nil {
		t.Fatal(err)
	}
	if f.clusterCIDR != "10.52.0.0/16" || f.httpsListenPort != 8443 || f.writeKubeconfigMode != "0644" || !f.disableAgent {
		t.Errorf("flags after config file: %+v", f)
	}
	if strings.Join(f.tlsSANs, " ") != "a.example 192.0.2.7" {
		t.Errorf("tls-san %v", f.tlsSANs)
	}
	// Values with commas stay whole: they are upstream flag values.
	if len(f.apiserverArgs) != 2 || f.apiserverArgs[0] != "feature-gates=A=true,B=false" {
		t.Errorf("kube-apiserver-arg %q", f.apiserverArgs)
	}
	if from.of("cluster-cidr") != "config file "+path+":2" || from.of("https-listen-port") != "--https-listen-port" {
		t.Errorf("origins %v", from)
	}
	cfg, err := f.serverConfig(from)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.WriteKubeconfigMode != 0o644 || cfg.ClusterDNS.String() != "10.43.0.10" {
		t.Errorf("config %+v", cfg)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for content, want := range map[string]string{
		"cluster-cidr: 10.42.0.0/16\nnope: 1\n": `:2: unknown key "nope"`,
		"config: /etc/other.yaml\n":             `unknown key "config"`,
		"- a\n- b\n":                            "expected a map of flag names",
		"cluster-cidr: [\n":                     "is not valid YAML",
		"https-listen-port: many\n":             `invalid value "many" for "https-listen-port"`,
		"cluster-domain: {a: b}\n":              "must be a value or a list",
		"cluster-domain: [a, b]\n":              "takes one value, not a list",
		"tls-san: [[a]]\n":                      "list items must be plain values",
	} {
		_, fs := parsedServerFlags(t)
		err := applyConfigFile(fs, writeFile(t, content), true, origins{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", content, err, want)
		}
	}
}

func TestMissingConfigFile(t *testing.T) {
	_, fs := parsedServerFlags(t)
	absent := filepath.Join(t.TempDir(), "absent.yaml")
	if err := applyConfigFile(fs, absent, false, origins{}); err != nil {
		t.Errorf("missing default config file: %v", err)
	}
	if err := applyConfigFile(fs, absent, true, origins{}); err == nil {
		t.Error("a config file named on the command line may not be missing")
	}
}

func TestServerConfigSaysWhereABadValueCameFrom(t *testing.T) {
	path := writeFile(t, "service-cidr: 10.43.0.0/40\n")
	f, fs := parsedServerFlags(t)
	from := origins{}
	if err := applyConfigFile(fs, path, true, from); err != nil {
		t.Fatal(err)
	}
	_, err := f.serverConfig(from)
	if err == nil || !strings.Contains(err.Error(), "from config file "+path+":1") {
		t.Errorf("got %v", err)
	}
}
