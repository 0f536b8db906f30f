package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/pki"
)

// newEtcdCommand inspects and changes the embedded etcd's membership,
// through this server's member, with the servers' etcd client certificate.
func newEtcdCommand() *cobra.Command {
	var dataDir string
	var port int
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "The servers' embedded etcd: list and remove members",
	}
	cmd.PersistentFlags().StringVarP(&dataDir, "data-dir", "d", config.DefaultDataDir, "The server's data dir")
	cmd.PersistentFlags().IntVar(&port, "etcd-client-port", datastore.DefaultEtcdClientPort, "The embedded etcd's client port")
	// withMember runs f with a client of this server's member, bounded.
	withMember := func(cmd *cobra.Command, f func(context.Context, *clientv3.Client) error) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
		defer cancel()
		tls := pki.Dir(filepath.Join(dataDir, "server", "tls")).EtcdDir()
		if _, err := os.Stat(tls.Cert(pki.EtcdClient)); err != nil {
			return fmt.Errorf("no embedded etcd in %s (%w): run this on a server started with --cluster-init or --server, as root, or give --data-dir", dataDir, err)
		}
		client, err := datastore.EtcdClient([]string{"https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, tls)
		if err != nil {
			return err
		}
		defer client.Close()
		if _, err := client.Status(ctx, client.Endpoints()[0]); err != nil {
			return fmt.Errorf("this server's etcd member does not answer at %s: %w; is skiff server running?", client.Endpoints()[0], err)
		}
		return f(ctx, client)
	}
	member := &cobra.Command{Use: "member", Short: "List and remove members"}
	member.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the members, their addresses and health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withMember(cmd, func(ctx context.Context, client *clientv3.Client) error {
				return listMembers(ctx, client, cmd.OutOrStdout())
			})
		},
	})
	member.AddCommand(&cobra.Command{
		Use:   "remove NAME|ID",
		Short: "Remove a member (a server gone for good) from the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withMember(cmd, func(ctx context.Context, client *clientv3.Client) error {
				removed, err := datastore.RemoveMembers(ctx, client, func(name string, id uint64) bool {
					return name == args[0] || fmt.Sprintf("%x", id) == args[0]
				})
				if err == nil && len(removed) == 0 {
					err = fmt.Errorf("no etcd member named %q: see skiff etcd member list", args[0])
				}
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "removed etcd member %s; delete its server's data dir before it joins again\n", removed[0])
				}
				return err
			})
		},
	})
	cmd.AddCommand(member)
	return cmd
}

// listMembers prints the members, each with its role (leader, voter or
// learner) and whether it answers.
func listMembers(ctx context.Context, client *clientv3.Client, out io.Writer) error {
	list, err := client.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("listing etcd members: %w", err)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tID\tROLE\tHEALTH\tPEER\tCLIENT")
	for _, m := range list.Members {
		role, health := "voter", "not started"
		if m.IsLearner {
			role = "learner"
		}
		if len(m.ClientURLs) > 0 {
			health = "unhealthy"
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if st, err := client.Status(sctx, m.ClientURLs[0]); err == nil {
				health = "healthy"
				if st.Leader == m.ID {
					role = "leader"
				}
			}
			cancel()
		}
		fmt.Fprintf(w, "%s\t%x\t%s\t%s\t%s\t%s\n", m.Name, m.ID, role, health, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","))
	}
	return w.Flush()
}
