// Process-wide memory settings shared by every Go program skiff runs on a
// node: skiff itself, and the programs it carries (containerd, the add-ons'
// program), which are built from modules of their own. Only the standard
// library, x/sys and klog, so that importing it moves nobody's dependencies.
module github.com/skiff-dev/skiff/internal/memory

go 1.26.0

require (
	golang.org/x/sys v0.48.0
	k8s.io/klog/v2 v2.140.0
)

require github.com/go-logr/logr v1.4.1 // indirect
