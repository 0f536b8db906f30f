package helmchart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/strvals"
)

// values merges a HelmChart's values the way k3s orders them, each source
// overriding the ones before it: the chart's valuesContent, values and
// valuesSecrets, then its HelmChartConfig's, then spec.set.
func values(ctx context.Context, client kubernetes.Interface, hc *HelmChart, cfg *HelmChartConfig) (map[string]any, error) {
	type source struct {
		name       string
		content    string
		structured json.RawMessage
		secrets    []SecretValues
	}
	sources := []source{{"spec", hc.Spec.ValuesContent, hc.Spec.Values, hc.Spec.ValuesSecrets}}
	if cfg != nil {
		sources = append(sources, source{"HelmChartConfig " + cfg.Name, cfg.Spec.ValuesContent, cfg.Spec.Values, cfg.Spec.ValuesSecrets})
	}
	vals := map[string]any{}
	merge := func(what string, data []byte) error {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil
		}
		m, err := loader.LoadValues(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		vals = loader.MergeMaps(vals, m)
		return nil
	}
	for _, s := range sources {
		if err := merge(s.name+".valuesContent", []byte(s.content)); err != nil {
			return nil, err
		}
		if err := merge(s.name+".values", s.structured); err != nil {
			return nil, err
		}
		for _, ref := range s.secrets {
			secret, err := client.CoreV1().Secrets(hc.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && ref.IgnoreUpdates {
				continue // optional, as in k3s
			}
			if err != nil {
				return nil, fmt.Errorf("%s.valuesSecrets: Secret %s/%s: %w", s.name, hc.Namespace, ref.Name, err)
			}
			for _, key := range ref.Keys {
				if err := merge(fmt.Sprintf("Secret %s/%s key %s", hc.Namespace, ref.Name, key), secret.Data[key]); err != nil {
					return nil, err
				}
			}
		}
	}
	keys := make([]string, 0, len(hc.Spec.Set))
	for k := range hc.Spec.Set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := hc.Spec.Set[k]
		var err error
		switch {
		case v.Type == intstr.Int:
			err = strvals.ParseInto(fmt.Sprintf("%s=%d", k, v.IntVal), vals)
		case slices.Contains([]string{"true", "false", "null"}, strings.ToLower(v.StrVal)):
			// As k3s does (helm --set): these keep their types.
			err = strvals.ParseInto(k+"="+v.StrVal, vals)
		default:
			// helm --set-string, where a comma would start another key.
			err = strvals.ParseIntoString(k+"="+strings.ReplaceAll(v.StrVal, ",", `\,`), vals)
		}
		if err != nil {
			return nil, fmt.Errorf("spec.set %s: %w", k, err)
		}
	}
	return vals, nil
}
