// Command skiff-selfextract is the launcher at the start of a skiff release
// binary (see pkg/selfextract): it unpacks the skiff program that follows
// it, once, and runs it. It links nothing of Kubernetes, to stay small.
package main

import (
	"os"

	"github.com/skiff-dev/skiff/pkg/selfextract"
)

func main() {
	os.Exit(selfextract.Main(os.Args))
}
