package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/server"
)

// newSecretsEncryptCommand reports the encryption of Secrets at rest
// (k3s's `secrets-encrypt status`).
func newSecretsEncryptCommand() *cobra.Command {
	var dataDir, kubeconfig string
	cmd := &cobra.Command{
		Use:   "secrets-encrypt",
		Short: "The encryption of Secrets at rest",
	}
	cmd.PersistentFlags().StringVarP(&dataDir, "data-dir", "d", config.DefaultDataDir, "The server's data dir")
	adminFlag(cmd.PersistentFlags(), &kubeconfig)
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Say whether Secrets are encrypted, with which key, and whether every Secret has been rewritten with it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			path := (&config.Server{DataDir: dataDir}).EncryptionConfigFile()
			key, err := server.EncryptionKey(path)
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
			state, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, server.EncryptionStateName, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err) || err == nil && state.Data["key"] != key:
				fmt.Fprintln(out, "Secrets:    being rewritten with this key (the server does it at start)")
			case err != nil:
				return fmt.Errorf("reading the encryption state: %w", err)
			default:
				fmt.Fprintf(out, "Secrets:    all %s rewritten with this key at %s\n", state.Data["secrets"], state.Data["rewritten"])
			}
			return nil
		},
	})
	return cmd
}
