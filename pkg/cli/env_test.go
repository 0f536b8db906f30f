package cli

import (
	"strings"
	"testing"
)

func TestEnvironmentBetweenFlagsAndConfigFile(t *testing.T) {
	t.Setenv("SKIFF_CLUSTER_DOMAIN", "env.local")
	t.Setenv("SKIFF_HTTPS_LISTEN_PORT", "9443")
	t.Setenv("SKIFF_TLS_SAN", "a.example,b.example")
	t.Setenv("SKIFF_DATASTORE_ENDPOINT", "memory://")
	path := writeFile(t, "cluster-domain: file.local\ndatastore-endpoint: postgres://db/k8s\nservice-cidr: 10.53.0.0/16\n")
	f, fs := parsedServerFlags(t, "--https-listen-port", "7443")
	from := origins{}
	if err := applyEnv(fs, from); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(fs, path, true, from); err != nil {
		t.Fatal(err)
	}
	if f.httpsListenPort != 7443 {
		t.Errorf("the command line must win over the environment: port %d", f.httpsListenPort)
	}
	if f.clusterDomain != "env.local" || f.datastore.Endpoint != "memory://" {
		t.Errorf("the environment must win over the config file: %q %q", f.clusterDomain, f.datastore.Endpoint)
	}
	if f.serviceCIDR != "10.53.0.0/16" {
		t.Errorf("the config file still sets what nothing else does: %q", f.serviceCIDR)
	}
	if strings.Join(f.tlsSANs, " ") != "a.example b.example" {
		t.Errorf("a repeatable flag takes a comma-separated list: %v", f.tlsSANs)
	}
	if from.of("cluster-domain") != "$SKIFF_CLUSTER_DOMAIN" {
		t.Errorf("origin %q", from.of("cluster-domain"))
	}
}

func TestBadEnvironmentValueNamesTheVariable(t *testing.T) {
	t.Setenv("SKIFF_HTTPS_LISTEN_PORT", "many")
	_, fs := parsedServerFlags(t)
	err := applyEnv(fs, origins{})
	if err == nil || !strings.Contains(err.Error(), "SKIFF_HTTPS_LISTEN_PORT") {
		t.Errorf("got %v", err)
	}
}

func TestConfigFileVariableIsK3sStyle(t *testing.T) {
	path := writeFile(t, "cluster-domain: file.local\n")
	t.Setenv("SKIFF_CONFIG_FILE", path)
	f, fs := parsedServerFlags(t)
	if err := applyEnv(fs, origins{}); err != nil {
		t.Fatal(err)
	}
	if f.configFile != path || !fs.Changed("config") {
		t.Errorf("SKIFF_CONFIG_FILE did not set --config: %q", f.configFile)
	}
}
