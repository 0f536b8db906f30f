// Package helmchart is skiff's Helm controller: it serves k3s's
// helm.cattle.io/v1 HelmChart and HelmChartConfig, so that k3s users'
// manifests apply unchanged, and installs, upgrades and uninstalls each
// chart with the Helm SDK inside the server (k3s runs a Job with the helm
// command instead; skiff has no registry to pull that Job's image from).
//
// A chart comes from spec.chartContent (a base64 chart archive) or from
// spec.chart: a chart archive or directory under the server's manifests
// directory, or k3s's https://%{KUBERNETES_API}%/static/charts/NAME.tgz,
// read from <data-dir>/server/static/charts. Chart repositories are not
// reached yet.
package helmchart

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Group is k3s's API group, kept so that its manifests work as they are.
const Group = "helm.cattle.io"

var (
	chartsResource  = schema.GroupVersionResource{Group: Group, Version: "v1", Resource: "helmcharts"}
	configsResource = schema.GroupVersionResource{Group: Group, Version: "v1", Resource: "helmchartconfigs"}
)

// HelmChart is the part of k3s's HelmChart that skiff acts on; the CRD
// accepts k3s's other fields (the Job's image and security contexts, a
// repository's credentials) and they have no effect here.
type HelmChart struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ChartSpec   `json:"spec,omitempty"`
	Status            ChartStatus `json:"status,omitempty"`
}

// ChartSpec names the chart, where it goes and its values.
type ChartSpec struct {
	TargetNamespace string                        `json:"targetNamespace,omitempty"`
	CreateNamespace bool                          `json:"createNamespace,omitempty"`
	Chart           string                        `json:"chart,omitempty"`
	ChartContent    string                        `json:"chartContent,omitempty"`
	Version         string                        `json:"version,omitempty"`
	Repo            string                        `json:"repo,omitempty"`
	Set             map[string]intstr.IntOrString `json:"set,omitempty"`
	Values          json.RawMessage               `json:"values,omitempty"`
	ValuesContent   string                        `json:"valuesContent,omitempty"`
	ValuesSecrets   []SecretValues                `json:"valuesSecrets,omitempty"`
	TakeOwnership   bool                          `json:"takeOwnership,omitempty"`
	ServerSide      string                        `json:"serverSide,omitempty"`
	ForceConflicts  bool                          `json:"forceConflicts,omitempty"`
	Timeout         *metav1.Duration              `json:"timeout,omitempty"`
	FailurePolicy   string                        `json:"failurePolicy,omitempty"`
	Driver          string                        `json:"driver,omitempty"`
}

// ChartStatus is k3s's: conditions, of which skiff sets Failed.
type ChartStatus struct {
	JobName    string      `json:"jobName,omitempty"`
	Conditions []Condition `json:"conditions,omitempty"`
}

// Condition is one of a HelmChart's conditions.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// HelmChartConfig adds values to the HelmChart of the same name and
// namespace, for charts someone else's manifest deploys.
type HelmChartConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ConfigSpec `json:"spec,omitempty"`
}

// ConfigSpec holds the values and policies a HelmChartConfig overrides.
type ConfigSpec struct {
	Values         json.RawMessage `json:"values,omitempty"`
	ValuesContent  string          `json:"valuesContent,omitempty"`
	ValuesSecrets  []SecretValues  `json:"valuesSecrets,omitempty"`
	FailurePolicy  string          `json:"failurePolicy,omitempty"`
	ServerSide     string          `json:"serverSide,omitempty"`
	ForceConflicts *bool           `json:"forceConflicts,omitempty"`
}

// SecretValues names keys of a Secret in the HelmChart's namespace whose
// contents are values YAML.
type SecretValues struct {
	Name          string   `json:"name,omitempty"`
	Keys          []string `json:"keys,omitempty"`
	IgnoreUpdates bool     `json:"ignoreUpdates,omitempty"`
}

// Failure policies, as in k3s: reinstall (the default) uninstalls a failed
// release and tries again with a back-off; abort and retry leave it failed
// until the HelmChart, its config or its chart changes.
const (
	FailurePolicyReinstall = "reinstall"
	FailurePolicyAbort     = "abort"
	FailurePolicyRetry     = "retry"
)

// ConditionFailed is the condition k3s's `kubectl get helmchart` shows.
const ConditionFailed = "Failed"
