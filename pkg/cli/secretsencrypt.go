package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/encryption"
)

// newSecretsEncryptCommand reports the encryption of Secrets at rest and
// rotates its key (k3s's `secrets-encrypt status|rotate-keys`).
func newSecretsEncryptCommand() *cobra.Command {
	var dataDir, kubeconfig string
	cmd := &cobra.Command{
		Use:   "secrets-encrypt",
		Short: "The encryption of Secrets at rest",
	}
	cmd.PersistentFlags().StringVarP(&dataDir, "data-dir", "d", config.DefaultDataDir, "The server's data dir")
	adminFlag(cmd.PersistentFlags(), &kubeconfig)
	configFile := func() string { return (&config.Server{DataDir: dataDir}).EncryptionConfigFile() }
	status := &cobra.Command{
		Use:   "status",
		Short: "Say whether Secrets are encrypted, with which key, and whether every Secret has been rewritten with it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			path := configFile()
			key, err := encryption.CurrentKey(path)
			if errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(out, "Encryption: disabled (no %s; the server runs with --secrets-encryption=false)\n", path)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Encryption: enabled\nProvider:   secretbox\nKey:        %s\nConfig:     %s\n", key, filepath.Clean(path))
			client, err := adminClient(kubeconfig, "skiff-secrets-encrypt")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			state, err := encryption.State(ctx, client)
			switch {
			case err != nil:
				return err
			case state["key"] != key:
				fmt.Fprintln(out, "Secrets:    being rewritten with this key (the server does it at start)")
			default:
				fmt.Fprintf(out, "Secrets:    all %s rewritten with this key at %s\n", state["secrets"], state["rewritten"])
			}
			return nil
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate-keys",
		Short: "Encrypt every Secret with a new key, then drop the old one (on the server, while it runs)",
		Long: "Puts a new key first in the encryption configuration, waits for the apiserver to load it (up to a minute), " +
			"rewrites every Secret with it, printing progress, and drops the old key. Interrupted, it can be run again: " +
			"a Secret not yet rewritten still reads with the keys kept until the last step.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := adminClient(kubeconfig, "skiff-secrets-encrypt")
			if err != nil {
				return err
			}
			return rotateKeys(cmd.Context(), cmd.OutOrStdout(), client, configFile())
		},
	}
	cmd.AddCommand(status, rotate)
	return cmd
}

// rotateKeys runs the rotation on this server's configuration at path.
func rotateKeys(ctx context.Context, out io.Writer, client kubernetes.Interface, path string) error {
	old, err := encryption.CurrentKey(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no %s: Secrets are not encrypted here (the server runs with --secrets-encryption=false, or --data-dir names another)", path)
	}
	if err != nil {
		return err
	}
	if n, err := runningAPIServers(ctx, client); err != nil {
		return err
	} else if n > 1 {
		return fmt.Errorf("this cluster has %d servers, and each keeps its own copy of the key: rotate-keys works on a cluster of one server only", n)
	}
	if state, err := encryption.State(ctx, client); err != nil {
		return err
	} else if state["key"] != old {
		return fmt.Errorf("the server is still rewriting the Secrets with key %s: wait until `skiff secrets-encrypt status` says all are, then run rotate-keys again", old)
	}
	key, err := encryption.Rotate(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "new key %s written to %s; waiting for the apiserver to load it (it reads the file about once a minute)\n", key, path)
	if err := encryption.WaitLoaded(ctx, client, path); err != nil {
		return err
	}
	start := time.Now()
	n, err := encryption.RewriteSecrets(ctx, client, func(done, total int) {
		fmt.Fprintf(out, "rewritten %d of %d Secrets\n", done, total)
	})
	if err != nil {
		return fmt.Errorf("%w; run rotate-keys again to finish (every Secret still reads)", err)
	}
	if err := encryption.RecordState(ctx, client, key, n); err != nil {
		return err
	}
	// Nothing reads with the old keys any more: the apiserver may drop
	// them whenever it next reads the file.
	dropped, err := encryption.DropOldKeys(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "every Secret (%d) is encrypted with %s, rewritten in %s; dropped %v\n", n, key, time.Since(start).Round(time.Millisecond), dropped)
	return nil
}

// runningAPIServers counts the apiservers that renewed their identity
// lease in the last minute: the servers of an HA cluster renew every 10 s,
// a sole server only every control.SoleServerIdentityLeaseRenewal, so it
// may count none, and more than one means several servers.
func runningAPIServers(ctx context.Context, client kubernetes.Interface) (int, error) {
	leases, err := client.CoordinationV1().Leases(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "apiserver.kubernetes.io/identity=kube-apiserver"})
	if err != nil {
		return 0, fmt.Errorf("counting the cluster's servers: %w", err)
	}
	n := 0
	for _, l := range leases.Items {
		if l.Spec.RenewTime != nil && time.Since(l.Spec.RenewTime.Time) < time.Minute {
			n++
		}
	}
	return n, nil
}
