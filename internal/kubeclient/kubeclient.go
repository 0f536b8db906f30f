// Package kubeclient turns the kubeconfig files skiff writes into client-go
// configurations and clientsets: the one place where skiff's own parts (the
// server's controllers, the node agent) get their clients.
package kubeclient

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config loads the kubeconfig file at path for a client that names itself
// userAgent in the apiserver's logs and audit events.
func Config(path, userAgent string) (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	rc.UserAgent = userAgent
	return rc, nil
}

// New is a clientset for Config(path, userAgent).
func New(path, userAgent string) (kubernetes.Interface, error) {
	rc, err := Config(path, userAgent)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}
