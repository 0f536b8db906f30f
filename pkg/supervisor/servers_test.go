package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"
)

func TestServerJoin(t *testing.T) {
	_, dir, client := testServer(t)
	settings := AgentConfig{ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDomain: "cluster.local"}
	var added []string
	side := func(kind string) ServerSide {
		return ServerSide{TLS: dir, AgentToken: "K10agent", Datastore: kind,
			AddEtcdMember: func(_ context.Context, name, peer string) (string, []string, error) {
				added = append(added, name+"="+peer)
				return "first=https://192.0.2.10:2380," + name + "=" + peer, []string{"https://192.0.2.10:2379"}, nil
			}}
	}
	req := func(peer string) ServerRequest {
		return ServerRequest{Name: "second", EtcdPeerURL: peer, ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDomain: "cluster.local"}
	}
	for _, c := range []struct {
		name, kind string
		req        ServerRequest
		want       string // in the refusal; "" for a join
	}{
		{"a SQLite server", DatastoreSQLite, req(""), "--cluster-init"},
		{"an etcd cluster, joiner without etcd", DatastoreEtcd, req(""), "without --datastore-endpoint"},
		{"an external datastore, joiner with etcd", DatastoreExternal, req("https://192.0.2.11:2380"), "same --datastore-endpoint"},
		{"another cluster CIDR", DatastoreEtcd, func() ServerRequest { r := req("https://192.0.2.11:2380"); r.ClusterCIDR = "10.52.0.0/16"; return r }(), "--cluster-cidr"},
		{"another --secrets-encryption", DatastoreExternal, func() ServerRequest { r := req(""); r.SecretsEncryption = true; return r }(), "--secrets-encryption"},
		{"an external datastore", DatastoreExternal, req(""), ""},
		{"an etcd cluster", DatastoreEtcd, req("https://192.0.2.11:2380"), ""},
	} {
		h, err := NewHandler(settings, dir, []net.IP{net.ParseIP("192.0.2.10")}, client, side(c.kind))
		if err != nil {
			t.Fatal(err)
		}
		added = nil
		resp, err := h.server(context.Background(), &c.req)
		var je *joinError
		switch {
		case c.want != "" && (!errors.As(err, &je) || je.status != http.StatusBadRequest || !strings.Contains(je.msg, c.want)):
			t.Errorf("%s: %v, want a 400 refusal naming %q", c.name, err, c.want)
		case c.want != "" && len(added) > 0:
			t.Errorf("%s: refused, but added etcd members %v", c.name, added)
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == "":
			if resp.AgentToken != "K10agent" || resp.Files["server-ca.key"] == "" || resp.Files["service.key"] == "" {
				t.Errorf("%s: the response lacks the shared secrets: token %q, files %d", c.name, resp.AgentToken, len(resp.Files))
			}
			if c.kind == DatastoreEtcd && (len(added) != 1 || !strings.Contains(resp.EtcdInitialCluster, "second=https://192.0.2.11:2380")) {
				t.Errorf("%s: members added %v, initial cluster %q", c.name, added, resp.EtcdInitialCluster)
			}
		}
	}

	// A holder of an agent token may not join as a server.
	h, _ := NewHandler(settings, dir, nil, client, side(DatastoreExternal))
	body, _ := json.Marshal(req(""))
	r := httptest.NewRequest(http.MethodPost, PathServer, bytes.NewReader(body))
	r = r.WithContext(request.WithUser(r.Context(), &user.DefaultInfo{Name: "system:bootstrap:abcdef", Groups: []string{"system:bootstrappers", AgentsGroup}}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "server token") {
		t.Errorf("an agent token joining a server: %d %q", w.Code, w.Body.String())
	}
}
