package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"text/template"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// decode reads every object of a YAML (one or more documents) or JSON
// manifest; a List's items count as objects.
func decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var raw map[string]any
		if err := dec.Decode(&raw); err == io.EOF {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(raw) == 0 {
			continue // an empty document, between two ---
		}
		obj := &unstructured.Unstructured{Object: raw}
		if obj.IsList() {
			list, err := obj.ToList()
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", doc, err)
			}
			for i := range list.Items {
				objs = append(objs, &list.Items[i])
			}
			continue
		}
		if obj.GetKind() == "" || obj.GetAPIVersion() == "" || obj.GetName() == "" {
			return nil, fmt.Errorf("document %d: an object needs apiVersion, kind and metadata.name", doc)
		}
		objs = append(objs, obj)
	}
}

func render(templates fs.FS, name string, values any) ([]byte, error) {
	text, err := fs.ReadFile(templates, name)
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New(name).Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("add-on template %s: %w", name, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, values); err != nil {
		return nil, fmt.Errorf("add-on template %s: %w", name, err)
	}
	return out.Bytes(), nil
}

func contentHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

var notLabelChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// labelValue turns a file name into a label value: at most 63 characters
// of letters, digits, '-', '_' and '.', starting and ending with one of the
// first two.
func labelValue(file string) string {
	v := notLabelChars.ReplaceAllString(file, "_")
	if len(v) > 63 {
		v = v[:63]
	}
	return string(bytes.Trim([]byte(v), "._-"))
}
