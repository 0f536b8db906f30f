package helmchart

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
)

//go:embed crds.yaml
var crdsYAML []byte

// crds decodes the embedded CustomResourceDefinitions.
func crds() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(crdsYAML), 4096)
	var out []*apiextensionsv1.CustomResourceDefinition
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := dec.Decode(crd); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("the embedded HelmChart CRDs: %w", err)
		}
		out = append(out, crd)
	}
}

// EnsureCRDs creates or updates the HelmChart and HelmChartConfig
// definitions and returns once the apiserver serves both, so that a
// HelmChart in the manifests directory applies on the deployer's first
// pass.
func EnsureCRDs(ctx context.Context, rc *rest.Config) error {
	client, err := apiextensions.NewForConfig(rc)
	if err != nil {
		return err
	}
	defs, err := crds()
	if err != nil {
		return err
	}
	crdClient := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, want := range defs {
		have, err := crdClient.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = crdClient.Create(ctx, want, metav1.CreateOptions{})
		case err == nil:
			want.ResourceVersion = have.ResourceVersion
			_, err = crdClient.Update(ctx, want, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("CRD %s: %w", want.Name, err)
		}
	}
	for _, want := range defs {
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			crd, err := crdClient.Get(ctx, want.Name, metav1.GetOptions{})
			return err == nil && apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established), nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s is not established: %w", want.Name, err)
		}
	}
	return nil
}
