package control

import (
	"reflect"
	"testing"
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
