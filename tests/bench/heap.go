package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// heapGroups names the in-process components by the packages of their code.
// A heap sample belongs to the group of the frame nearest the allocation
// that has one of these prefixes; samples with none fall to the shared
// groups below, then to skiff's, then to "other". Package init comes
// first: its stacks hold every package's code.
var heapGroups = []struct{ name, prefixes string }{
	{"kube-apiserver", "k8s.io/apiserver/ k8s.io/kubernetes/pkg/controlplane k8s.io/kubernetes/pkg/registry/ k8s.io/kubernetes/pkg/kubeapiserver k8s.io/apiextensions-apiserver/ k8s.io/kube-aggregator/ k8s.io/kubernetes/cmd/kube-apiserver"},
	{"kube-controller-manager", "k8s.io/kubernetes/pkg/controller/ k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/controller-manager/ k8s.io/cloud-provider/"},
	{"kube-scheduler", "k8s.io/kubernetes/pkg/scheduler/ k8s.io/kubernetes/cmd/kube-scheduler"},
	{"kubelet", "k8s.io/kubernetes/pkg/kubelet/ k8s.io/kubernetes/cmd/kubelet github.com/google/cadvisor/ k8s.io/kubernetes/pkg/volume/"},
	{"kube-proxy", "k8s.io/kubernetes/pkg/proxy/ k8s.io/kubernetes/cmd/kube-proxy"},
	{"datastore (kine, SQLite, etcd)", "github.com/k3s-io/kine/ github.com/mattn/go-sqlite3 go.etcd.io/etcd/server/"},
	{"flannel", "github.com/flannel-io/"},
}

var sharedHeapGroups = []struct{ name, prefixes string }{
	{"informer caches (any component)", "k8s.io/client-go/tools/cache"},
	{"metrics registries", "k8s.io/component-base/metrics github.com/prometheus/"},
	{"HTTP/2 and TLS connections", "golang.org/x/net/http2 net/http. crypto/tls"},
}

// skiffHeapGroup is last: skiff starts every component's goroutines, so
// its frames are at the root of most stacks.
var skiffHeapGroup = []struct{ name, prefixes string }{{"skiff", "github.com/skiff-dev/skiff/"}}

type heapShare struct {
	group string
	bytes int64
}

// heapTable reads the in-use heap of the process serving Go profiles on
// addr (after a GC) and splits it by component, largest first; with it the
// runtime's own figures (heap kept, released, stacks). The profile is kept
// in saveAs, for `go tool pprof`.
func heapTable(addr, saveAs string) (shares []heapShare, stats map[string]int64, err error) {
	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Get("http://" + addr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(saveAs, data, 0o644); err != nil {
		return nil, nil, err
	}
	p, err := profile.ParseData(data)
	if err != nil {
		return nil, nil, err
	}
	index := slices.IndexFunc(p.SampleType, func(t *profile.ValueType) bool { return t.Type == "inuse_space" })
	if index < 0 {
		return nil, nil, fmt.Errorf("no inuse_space in the heap profile")
	}
	by := map[string]int64{}
	for _, s := range p.Sample {
		by[heapGroup(s)] += s.Value[index]
	}
	for g, b := range by {
		shares = append(shares, heapShare{g, b})
	}
	slices.SortFunc(shares, func(a, b heapShare) int { return int(b.bytes - a.bytes) })
	stats, err = memStats(client, addr)
	return shares, stats, err
}

func heapGroup(s *profile.Sample) string {
	var frames []string // the allocation's first
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function != nil {
				frames = append(frames, line.Function.Name)
			}
		}
	}
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.doInit") {
			return "package init (global variables)"
		}
	}
	for _, groups := range [][]struct{ name, prefixes string }{heapGroups, sharedHeapGroups, skiffHeapGroup} {
		for _, f := range frames {
			for _, g := range groups {
				for _, prefix := range strings.Fields(g.prefixes) {
					if strings.HasPrefix(f, prefix) {
						return g.name
					}
				}
			}
		}
	}
	return "other"
}

// memStats reads the runtime.MemStats lines that end the text heap profile.
func memStats(client *http.Client, addr string) (map[string]int64, error) {
	resp, err := client.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	stats := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// "# HeapInuse = 123" or "# Stack = 123 / 456" (in use / from
		// the OS)
		name, value, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "# "), " = ")
		if !ok {
			continue
		}
		value, _, _ = strings.Cut(value, " ")
		if n, err := strconv.ParseInt(value, 10, 64); err == nil {
			stats[name] = n
		}
	}
	return stats, sc.Err()
}
