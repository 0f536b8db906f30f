package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"
)

// checkIngress routes /shop of an Ingress, with no class named, to the
// busybox httpd Service checkServices made, and reaches it on the node's
// port 80, and over TLS from a Secret on 443.
func checkIngress(t *testing.T, ctx context.Context, c kubernetes.Interface) {
	const ns, host = "apps", "shop.example"
	crt, key, err := cert.GenerateSelfSignedCertKey(host, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
	if _, err := c.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec: networkingv1.IngressSpec{
			TLS: []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: "shop-tls"}},
			Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{
					Path: "/shop", PathType: ptr.To(networkingv1.PathTypePrefix),
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
						Name: "web", Port: networkingv1.ServiceBackendPort{Number: 8088}}},
				}},
			}}}},
		},
	}
	created, err := c.NetworkingV1().Ingresses(ns).Create(ctx, ing, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(created.Spec.IngressClassName, ""); got != "caddy" {
		t.Errorf("the default IngressClass was not applied: ingressClassName %q", got)
	}
	waitDeploymentAvailable(t, ctx, c, "kube-system", "skiff-ingress")

	node := nodeIP(t, ctx, c)
	httpGet(t, fmt.Sprintf("http://%s/shop/", node), "shop-ok")
	if code := httpStatus(t, &http.Client{Timeout: 5 * time.Second}, fmt.Sprintf("http://%s/elsewhere", node), ""); code != http.StatusNotFound {
		t.Errorf("a path no Ingress names: status %d, want 404", code)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(crt)
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host}}}
	if code := httpStatus(t, tlsClient, fmt.Sprintf("https://%s/shop/", node), host); code != http.StatusOK {
		t.Errorf("HTTPS with the Secret's certificate: status %d", code)
	}

	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := c.NetworkingV1().Ingresses(ns).Get(ctx, "shop", metav1.GetOptions{})
		return err == nil && len(got.Status.LoadBalancer.Ingress) > 0 && got.Status.LoadBalancer.Ingress[0].IP == node, nil
	})
	if err != nil {
		t.Errorf("the Ingress's status does not show the node's address %s: %v", node, err)
	}
}

// httpStatus polls url until it answers and returns the status code.
func httpStatus(t *testing.T, client *http.Client, url, host string) int {
	t.Helper()
	code := 0
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err
			return false, nil
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		code = resp.StatusCode
		return true, nil
	})
	if err != nil {
		t.Fatalf("GET %s: %v (last: %v)", url, err, last)
	}
	return code
}
