package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"

	"github.com/skiff-dev/skiff/internal/kubeclient"
	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/supervisor"
)

// newTokenCommand manages join tokens: upstream bootstrap tokens in the
// cluster, shown in skiff's K10<CA hash>::<id>.<secret> form. It talks to
// the cluster as the admin (the server's kubeconfig).
func newTokenCommand() *cobra.Command {
	var kubeconfig, dataDir string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list, delete and rotate the tokens nodes join with",
	}
	adminFlag(cmd.PersistentFlags(), &kubeconfig)
	cmd.PersistentFlags().StringVarP(&dataDir, "data-dir", "d", config.DefaultDataDir, "The server's data dir (rotate writes its agent token there)")
	admin := func() (kubernetes.Interface, string, error) {
		client, err := adminClient(kubeconfig, "skiff-token")
		if err != nil {
			return nil, "", err
		}
		hash, err := caHashOf(kubeconfig)
		return client, hash, err
	}

	var ttl time.Duration
	var description string
	var servers bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token that joins agents (or, with --server-token, servers too) for --ttl",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, hash, err := admin()
			if err != nil {
				return err
			}
			t, err := supervisor.NewToken(hash)
			if err != nil {
				return err
			}
			groups := supervisor.AgentsGroup
			if servers {
				groups = supervisor.ServersGroup + "," + supervisor.AgentsGroup
			}
			if err := supervisor.ApplyBootstrapToken(cmd.Context(), client, t, groups, description, ttl); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.String())
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "How long the token lasts (0: for ever)")
	create.Flags().StringVar(&description, "description", "made by skiff token create", "What the token is for")
	create.Flags().BoolVar(&servers, "server-token", false, "The token joins servers as well as agents")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the join tokens: ID, expiry, what they join, description",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, _, err := admin()
			if err != nil {
				return err
			}
			return listTokens(cmd.Context(), client, cmd.OutOrStdout())
		},
	}

	del := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete tokens by ID (the six characters before the dot)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			client, _, err := admin()
			if err != nil {
				return err
			}
			for _, id := range ids {
				id = tokenID(id)
				err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(cmd.Context(), bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{})
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("no token %s (skiff token list shows them)", id)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted token %s\n", id)
			}
			return nil
		},
	}

	var newToken string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the server's agent token (<data-dir>/server/agent-token): the old one joins no more nodes",
		Long: "Replace the server's agent token with a new one (or --new-token), in the cluster and in\n" +
			"<data-dir>/server/agent-token, and delete the old one. Nodes that have joined keep working;\n" +
			"nodes that join later need the new token.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, hash, err := admin()
			if err != nil {
				return err
			}
			path := filepath.Join(dataDir, "server", "agent-token")
			oldData, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("reading the agent token: %w; run on the server, or give --data-dir", err)
			}
			old, err := supervisor.ParseToken(string(oldData))
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			t, err := supervisor.NewToken(hash)
			if newToken != "" {
				t, err = supervisor.ParseToken(newToken)
				t.CAHash = hash
			}
			if err != nil {
				return err
			}
			if t.ID == old.ID {
				return errors.New("the new token is the old one")
			}
			ctx := cmd.Context()
			if err := supervisor.ApplyBootstrapToken(ctx, client, t, supervisor.AgentsGroup, "skiff's agent token", 0); err != nil {
				return err
			}
			if err := pki.WriteFileIfChanged(path, []byte(t.String()+"\n"), 0o600); err != nil {
				return fmt.Errorf("writing %s: %w", path, err)
			}
			if err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstraputil.BootstrapTokenSecretName(old.ID), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting the old token %s: %w", old.ID, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "the agent token is now %s (in %s); token %s is deleted\n", t.String(), path, old.ID)
			return nil
		},
	}
	rotate.Flags().StringVar(&newToken, "new-token", "", "The new token or passphrase (default: a random one)")

	cmd.AddCommand(create, list, del, rotate)
	return cmd
}

// caHashOf is the hash of the server CA in the admin kubeconfig.
func caHashOf(kubeconfig string) (string, error) {
	rc, err := kubeclient.Config(kubeconfig, "skiff-token")
	if err != nil {
		return "", err
	}
	data := rc.CAData
	if len(data) == 0 && rc.CAFile != "" {
		if data, err = os.ReadFile(rc.CAFile); err != nil {
			return "", err
		}
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil || len(certs) == 0 {
		return "", fmt.Errorf("%s names no server CA to pin tokens to: %v", kubeconfig, err)
	}
	return supervisor.CAHash(certs[0]), nil
}

// tokenID accepts an ID, a token or a full K10 token.
func tokenID(s string) string {
	if t, err := supervisor.ParseToken(s); err == nil && strings.Contains(s, ".") {
		return t.ID
	}
	return s
}

func listTokens(ctx context.Context, client kubernetes.Interface, out interface{ Write([]byte) (int, error) }) error {
	secrets, err := client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: "type=" + string(bootstrapapi.SecretTypeBootstrapToken),
	})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tEXPIRES\tJOINS\tDESCRIPTION")
	for _, s := range secrets.Items {
		expires := "never"
		if e := string(s.Data[bootstrapapi.BootstrapTokenExpirationKey]); e != "" {
			expires = e
			if at, err := time.Parse(time.RFC3339, e); err == nil {
				expires = "in " + duration.HumanDuration(time.Until(at))
				if time.Now().After(at) {
					expires = "expired"
				}
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Data[bootstrapapi.BootstrapTokenIDKey], expires, joins(&s), s.Data[bootstrapapi.BootstrapTokenDescriptionKey])
	}
	return w.Flush()
}

// joins says what a token's groups let it join.
func joins(s *corev1.Secret) string {
	groups := string(s.Data[bootstrapapi.BootstrapTokenExtraGroupsKey])
	switch {
	case strings.Contains(groups, supervisor.ServersGroup):
		return "servers, agents"
	case strings.Contains(groups, supervisor.AgentsGroup):
		return "agents"
	}
	return "nothing of skiff's"
}
