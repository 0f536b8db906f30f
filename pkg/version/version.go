// Package version reports the versions stamped into the skiff binary.
//
// The variables are set at link time by the Makefile (-ldflags -X); they are
// never written at run time.
package version

import (
	"fmt"
	"runtime"

	kversion "k8s.io/component-base/version"
)

var (
	// Version is skiff's own version, from `git describe`.
	Version = "v0.0.0-dev"
	// GitCommit is the commit the binary was built from.
	GitCommit = "unknown"
)

// Kubernetes returns the version of the Kubernetes components linked in.
func Kubernetes() string {
	return kversion.Get().GitVersion
}

// String is what `skiff --version` prints, with the platform the binary was
// built for (a release has one per architecture).
func String() string {
	return fmt.Sprintf("skiff version %s (%s) %s/%s\nkubernetes %s\n", Version, GitCommit, runtime.GOOS, runtime.GOARCH, Kubernetes())
}
