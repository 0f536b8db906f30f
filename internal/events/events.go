// Package events records the Kubernetes Events of skiff's own loops, where
// `kubectl get events` and `kubectl describe` show them. Each is written
// at once: these loops report rarely, and a lost line would hide what a
// person must act on.
package events

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// Record creates an Event about obj from component, in obj's namespace
// (default for a cluster-scoped object, as the kubelet does for Nodes).
// A failure is logged, never returned: the event only repeats a log line.
func Record(ctx context.Context, client kubernetes.Interface, component string, obj corev1.ObjectReference, eventType, reason, message string) {
	ns := obj.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: component + "-", Namespace: ns},
		InvolvedObject: obj,
		Reason:         reason,
		Message:        message,
		Type:           eventType,
		Source:         corev1.EventSource{Component: component},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	if _, err := client.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		klog.InfoS("Recording an event failed", "reason", reason, "object", obj.Kind+"/"+obj.Name, "err", err)
	}
}

// Node is the reference to a Node for Record.
func Node(name string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: name}
}

// SystemNamespace is the reference for events that have no object of their
// own, such as a manifest file's or the datastore's: they hang on
// kube-system, named as its own namespace, which events require.
func SystemNamespace() corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: metav1.NamespaceSystem, Namespace: metav1.NamespaceSystem}
}
