package loadbalancer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func endpoints(name string, ready, notReady []string) *corev1.Endpoints {
	addrs := func(ips []string) []corev1.EndpointAddress {
		var as []corev1.EndpointAddress
		for _, ip := range ips {
			as = append(as, corev1.EndpointAddress{IP: ip})
		}
		return as
	}
	return &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceDefault},
		Subsets: []corev1.EndpointSubset{{
			Addresses:         addrs(ready),
			NotReadyAddresses: addrs(notReady),
			Ports:             []corev1.EndpointPort{{Name: "https", Port: 6443, Protocol: corev1.ProtocolTCP}},
		}},
	}
}

func TestWatchServers(t *testing.T) {
	const fallback = "192.0.2.1:6443"
	client := fake.NewClientset(
		endpoints("kubernetes", []string{"10.0.0.1", "10.0.0.2"}, []string{"10.0.0.3"}),
		endpoints("other", []string{"10.9.9.9"}, nil))
	// The fake's watch starts after its list; changes made in between
	// would be missed, so the test changes things only once it has.
	watching := make(chan struct{})
	var once sync.Once
	client.PrependWatchReactor("endpoints", func(k8stesting.Action) (bool, watch.Interface, error) {
		once.Do(func() { close(watching) })
		return false, nil, nil
	})
	lb, err := New("127.0.0.1:0", []string{fallback})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.listener.Close()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchServers(ctx, client, lb, []string{fallback})
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("WatchServers did not return after cancel")
		}
	}()

	want := func(servers ...string) {
		t.Helper()
		eventually(t, fmt.Sprintf("servers %q", servers), func() bool {
			return slices.Equal(lb.Servers(), servers)
		})
	}
	// Ready addresses with the https port, then the fallback; "other",
	// listed after "kubernetes" if the fake ignores the field selector,
	// does not count.
	want("10.0.0.1:6443", "10.0.0.2:6443", fallback)
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("the informer never watched")
	}

	// An apiserver's lease expires; another, also the fallback, joins.
	ep := endpoints("kubernetes", []string{"10.0.0.2", "192.0.2.1"}, nil)
	if _, err := client.CoreV1().Endpoints("default").Update(ctx, ep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want("10.0.0.2:6443", fallback)

	// No ready apiserver: the fallback alone.
	if _, err := client.CoreV1().Endpoints("default").Update(ctx, endpoints("kubernetes", nil, []string{"10.0.0.2"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	want(fallback)
}

func TestEndpointServers(t *testing.T) {
	ep := &corev1.Endpoints{Subsets: []corev1.EndpointSubset{
		{
			Addresses: []corev1.EndpointAddress{{IP: "10.0.0.1"}, {IP: "fd00::1"}},
			Ports:     []corev1.EndpointPort{{Name: "metrics", Port: 9000}, {Name: "https", Port: 6443}},
		},
		// A single port counts whatever its name.
		{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.2"}}, Ports: []corev1.EndpointPort{{Port: 443}}},
		// Several ports, none https: skipped.
		{Addresses: []corev1.EndpointAddress{{IP: "10.0.0.3"}}, Ports: []corev1.EndpointPort{{Name: "a", Port: 1}, {Name: "b", Port: 2}}},
	}}
	got := endpointServers(ep)
	want := []string{"10.0.0.1:6443", "[fd00::1]:6443", "10.0.0.2:443"}
	if !slices.Equal(got, want) {
		t.Errorf("endpointServers = %q, want %q", got, want)
	}
}
