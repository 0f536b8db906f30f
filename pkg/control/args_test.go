package control

import (
	"net"
	"reflect"
	"testing"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/pki"
)

func TestArgsUserWinsAndOrderIsStable(t *testing.T) {
	got := Args(map[string]string{"profiling": "false", "anonymous-auth": "false"},
		[]string{"--profiling=true", "feature-gates=A=true,B=false"})
	want := []string{"--anonymous-auth=false", "--feature-gates=A=true,B=false", "--profiling=true"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Args = %q, want %q", got, want)
	}
	if v := ArgValue(got, "feature-gates"); v != "A=true,B=false" {
		t.Errorf("ArgValue = %q", v)
	}
	if v := ArgValue(got, "absent"); v != "" {
		t.Errorf("ArgValue of an absent flag = %q", v)
	}
}

func TestCheckArgsRejectsUnknownUpstreamFlags(t *testing.T) {
	ok := []string{"--secure-port=0"}
	if err := CheckArgs(ok, ok, ok); err != nil {
		t.Fatalf("valid arguments: %v", err)
	}
	if err := CheckArgs(ok, []string{"--no-such-flag=1"}, ok); err == nil {
		t.Error("an unknown kube-controller-manager flag was accepted")
	}
}

// A sole server (SQLite) publishes the kubernetes Service's endpoint by
// count and runs no peer proxy: no apiserver can share its datastore. One
// that others can join keeps upstream's leases.
func TestAPIServerArgsOfASoleServer(t *testing.T) {
	_, serviceCIDR, _ := net.ParseCIDR("10.43.0.0/16")
	advertise := net.ParseIP("192.0.2.10")
	for _, c := range []struct {
		cfg        config.Server
		reconciler string
		gates      string
	}{
		{config.Server{}, "master-count", "UnknownVersionInteroperabilityProxy=false"},
		{config.Server{ClusterInit: true}, "", ""},
		{config.Server{Datastore: datastore.Config{Endpoint: "postgres://db/skiff"}}, "", ""},
	} {
		c.cfg.ServiceCIDR = serviceCIDR
		args := APIServerArgs(&c.cfg, 6443, pki.Dir("/tls"), &datastore.Backend{}, advertise)
		if got := ArgValue(args, "endpoint-reconciler-type"); got != c.reconciler {
			t.Errorf("%+v: endpoint-reconciler-type %q, want %q", c.cfg.Datastore, got, c.reconciler)
		}
		if got := ArgValue(args, "feature-gates"); got != c.gates {
			t.Errorf("%+v: feature-gates %q, want %q", c.cfg.Datastore, got, c.gates)
		}
	}
}
