package cli

import (
	"context"
	"fmt"
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
	connect := func(ctx context.Context) (*clientv3.Client, error) {
		tls := pki.Dir(filepath.Join(dataDir, "server", "tls")).EtcdDir()
		if _, err := os.Stat(tls.Cert(pki.EtcdClient)); err != nil {
			return nil, fmt.Errorf("no embedded etcd in %s (%w): run this on a server started with --cluster-init or --server, as root, or give --data-dir", dataDir, err)
		}
		client, err := datastore.EtcdClient([]string{"https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, tls)
		if err != nil {
			return nil, err
		}
		if _, err := client.Status(ctx, client.Endpoints()[0]); err != nil {
			client.Close()
			return nil, fmt.Errorf("this server's etcd member does not answer at %s: %w; is skiff server running?", client.Endpoints()[0], err)
		}
		return client, nil
	}
	member := &cobra.Command{Use: "member", Short: "List and remove members"}
	member.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the members, their addresses and health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			client, err := connect(ctx)
			if err != nil {
				return err
			}
			defer client.Close()
			list, err := client.MemberList(ctx)
			if err != nil {
				return fmt.Errorf("listing etcd members: %w", err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tID\tROLE\tHEALTH\tPEER\tCLIENT")
			for _, m := range list.Members {
				role, health := "voter", "unhealthy"
				if m.IsLearner {
					role = "learner"
				}
				if len(m.ClientURLs) > 0 {
					sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
					if st, err := client.Status(sctx, m.ClientURLs[0]); err == nil {
						health = "healthy"
						if st.Leader == m.ID {
							role = "leader"
						}
					}
					scancel()
				} else {
					health = "not started"
				}
				fmt.Fprintf(w, "%s\t%x\t%s\t%s\t%s\t%s\n", m.Name, m.ID, role, health, strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","))
			}
			return w.Flush()
		},
	})
	member.AddCommand(&cobra.Command{
		Use:   "remove NAME|ID",
		Short: "Remove a member (a server gone for good) from the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			client, err := connect(ctx)
			if err != nil {
				return err
			}
			defer client.Close()
			list, err := client.MemberList(ctx)
			if err != nil {
				return fmt.Errorf("listing etcd members: %w", err)
			}
			for _, m := range list.Members {
				if m.Name != args[0] && fmt.Sprintf("%x", m.ID) != args[0] {
					continue
				}
				if _, err := client.MemberRemove(ctx, m.ID); err != nil {
					return fmt.Errorf("removing etcd member %s: %w", args[0], err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed etcd member %s (%x); delete its data dir before it joins again\n", m.Name, m.ID)
				return nil
			}
			return fmt.Errorf("no etcd member named %q: see skiff etcd member list", args[0])
		},
	})
	cmd.AddCommand(member)
	return cmd
}
