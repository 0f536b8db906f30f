package cli

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/pkg/config"
)

// adminFlag binds --kubeconfig, the cluster's admin kubeconfig, for the
// subcommands that talk to the cluster as its admin.
func adminFlag(fs *pflag.FlagSet, kubeconfig *string) {
	fs.StringVar(kubeconfig, "kubeconfig", config.DefaultKubeconfig, "The admin kubeconfig of the cluster")
}

// adminClient is a client from the admin kubeconfig, named for the
// subcommand, with the hint a user needs when it cannot be read.
func adminClient(kubeconfig, name string) (kubernetes.Interface, error) {
	client, err := kubeclient.New(kubeconfig, name)
	if err != nil {
		return nil, fmt.Errorf("%w; run on the server as root, or give --kubeconfig", err)
	}
	return client, nil
}
