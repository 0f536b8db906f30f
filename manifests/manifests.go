// Package manifests holds the add-ons skiff deploys into every cluster, as
// Go templates of Kubernetes manifests (see pkg/deploy).
package manifests

import (
	"embed"
	"strings"
)

// Files are the add-on templates; each file's base name is the add-on's
// name for --disable.
//
//go:embed *.yaml
var Files embed.FS

// Names lists the add-ons, by file base name.
func Names() []string {
	entries, _ := Files.ReadDir(".")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return names
}
