package helmchart

import (
	"context"
	"encoding/json"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/klog/v2"

	"github.com/skiff-dev/skiff/internal/events"
)

// report sets the Failed condition (true when cause is set) and, for a
// failure, records an event; neither is repeated while the outcome stays
// the same, so a chart that stays broken does not add an event at every
// resync.
func (c *Controller) report(ctx context.Context, u *unstructured.Unstructured, hc *HelmChart, eventType, reason string, cause error) error {
	cond := Condition{Type: ConditionFailed, Status: string(corev1.ConditionFalse), Reason: reason}
	if cause != nil {
		cond.Status, cond.Message = string(corev1.ConditionTrue), cause.Error()
	}
	conds := slices.DeleteFunc(slices.Clone(hc.Status.Conditions), func(c Condition) bool { return c.Type == ConditionFailed })
	unchanged := slices.Contains(hc.Status.Conditions, cond)
	if eventType != "" && !unchanged {
		c.event(ctx, hc, eventType, reason, cond.Message)
	}
	if cause != nil {
		klog.InfoS("HelmChart failed", "helmchart", klog.KObj(hc), "reason", reason, "err", cause)
	}
	if unchanged {
		return nil
	}
	u = u.DeepCopy()
	list := make([]any, 0, len(conds)+1)
	for _, c := range append(conds, cond) {
		m, err := toMap(c)
		if err != nil {
			return err
		}
		list = append(list, m)
	}
	if err := unstructured.SetNestedSlice(u.Object, list, "status", "conditions"); err != nil {
		return err
	}
	_, err := c.dynamic.Resource(chartsResource).Namespace(hc.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *Controller) event(ctx context.Context, hc *HelmChart, eventType, reason, message string) {
	events.Record(ctx, c.client, Component, corev1.ObjectReference{
		APIVersion: Group + "/v1", Kind: "HelmChart", Namespace: hc.Namespace, Name: hc.Name, UID: hc.UID,
	}, eventType, reason, message)
}

// fromUnstructured reads an object into one of this package's types
// through JSON, which keeps raw values (spec.values) as they are.
func fromUnstructured(u *unstructured.Unstructured, into any) error {
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	return json.Unmarshal(data, into)
}

func toMap(v any) (map[string]any, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(data, &m)
}
