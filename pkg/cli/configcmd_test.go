package cli

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// runConfigServer runs `skiff config server args...` and returns its output.
func runConfigServer(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(append([]string{"config", "server"}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestConfigServerRoundTrips(t *testing.T) {
	t.Setenv("SKIFF_CLUSTER_DOMAIN", "from.env")
	args := []string{
		"--data-dir", "/srv/skiff data", "--https-listen-port=7443", "--disable-agent",
		"--tls-san", "a.example,192.0.2.7", "--tls-san", "b.example",
		"--kube-apiserver-arg", "feature-gates=A=true,B=false", "--kube-apiserver-arg", `audit-log-path=/var/log/"a": b`,
	}
	out, err := runConfigServer(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	// data-dir and write-kubeconfig are always there, as install.sh reads
	// them; the environment's cluster-domain is not (it stays in the
	// service's environment file).
	for _, want := range []string{`data-dir: "/srv/skiff data"`, `write-kubeconfig: "/etc/skiff/skiff.yaml"`, `https-listen-port: "7443"`, `disable-agent: "true"`} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks the line %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cluster-domain") || strings.HasPrefix(out, "config:") || strings.Contains(out, "\nconfig:") {
		t.Errorf("output holds a key that was not given:\n%s", out)
	}

	// Read back, the file sets the same values as the command line.
	fromArgs, _ := parsedServerFlags(t, args...)
	fromFile, fs := parsedServerFlags(t)
	if err := applyConfigFile(fs, writeFile(t, out), true, origins{}); err != nil {
		t.Fatalf("reading the output back: %v\n%s", err, out)
	}
	if fromFile.dataDir != fromArgs.dataDir || fromFile.httpsListenPort != 7443 || !fromFile.disableAgent ||
		!slices.Equal(fromFile.tlsSANs, fromArgs.tlsSANs) || !slices.Equal(fromFile.apiserverArgs, fromArgs.apiserverArgs) {
		t.Errorf("read back %+v, want %+v", fromFile, fromArgs)
	}
}

func TestConfigServerChecksLikeTheServer(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-cidr", "10.42.0.1/16"}, "did you mean 10.42.0.0/16"},
		{[]string{"--disable", "nosuch"}, "not an add-on"},
		{[]string{"--no-such-flag"}, "unknown flag"},
		{[]string{"--config", "/etc/x.yaml"}, "no place inside one"},
	} {
		if _, err := runConfigServer(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

func TestWriteConfigFileOnlyNamedFlags(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("a", "1", "")
	fs.String("b", "2", "")
	var out bytes.Buffer
	if err := writeConfigFile(&out, fs, map[string]bool{"b": true}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "b: \"2\"\n" {
		t.Errorf("got %q", out.String())
	}
}
