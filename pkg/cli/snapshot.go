package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/datastore"
	"github.com/skiff-dev/skiff/pkg/server"
)

// newDatastoreCommand is `skiff datastore`, the datastore's day-2 tools.
func newDatastoreCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "datastore", Short: "The datastore's status and snapshots"}
	cmd.AddCommand(newSnapshotCommand("snapshot"), newDatastoreStatusCommand())
	return cmd
}

// newDatastoreStatusCommand prints the datastore's size and compaction.
func newDatastoreStatusCommand() *cobra.Command {
	cfg := &config.Server{}
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the datastore's size, WAL size, current and compacted revision, and last compaction",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			st, err := server.DatastoreStatus(ctx, cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			case "table":
			default:
				return fmt.Errorf("--output %q: want table or json", output)
			}
			w := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
			fmt.Fprintf(w, "Datastore:\t%s %s\n", st.Kind, st.Path)
			fmt.Fprintf(w, "Size:\t%s (free inside: %s)\n", mib(st.SizeBytes), mib(st.FreeBytes))
			if st.Kind == "sqlite" {
				fmt.Fprintf(w, "WAL size:\t%s\n", mib(st.WALBytes))
				fmt.Fprintf(w, "Rows:\t%d\n", st.Rows)
			}
			fmt.Fprintf(w, "Revision:\t%d\n", st.Revision)
			fmt.Fprintf(w, "Compacted revision:\t%d (%d behind)\n", st.CompactRevision, st.Revision-st.CompactRevision)
			last := "not seen yet (the server checks once per --datastore-compact-interval)"
			if !st.LastCompaction.IsZero() {
				last = st.LastCompaction.Format(time.RFC3339)
			}
			if st.Kind == "sqlite" {
				fmt.Fprintf(w, "Last compaction:\t%s\n", last)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVarP(&cfg.DataDir, "data-dir", "d", config.DefaultDataDir, "The server's data dir")
	cmd.Flags().IntVar(&cfg.EtcdClientPort, "etcd-client-port", datastore.DefaultEtcdClientPort, "The embedded etcd's client port")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// newSnapshotCommand saves, lists, prunes and restores snapshots of the
// server's datastore; `skiff etcd-snapshot` is the same for k3s users.
func newSnapshotCommand(use string) *cobra.Command {
	cfg := &config.Server{}
	var name string
	var retention int
	cmd := &cobra.Command{
		Use:   use,
		Short: "Save, list, prune and restore snapshots of the datastore (SQLite or embedded etcd)",
	}
	fs := cmd.PersistentFlags()
	fs.StringVarP(&cfg.DataDir, "data-dir", "d", config.DefaultDataDir, "The server's data dir")
	fs.StringVar(&cfg.SnapshotDir, "snapshot-dir", "", "Directory of the snapshots (default: <data-dir>/server/db/snapshots)")
	fs.IntVar(&cfg.EtcdClientPort, "etcd-client-port", datastore.DefaultEtcdClientPort, "The embedded etcd's client port")
	save := &cobra.Command{
		Use:   "save",
		Short: "Save a snapshot now (the server may run: SQLite is copied consistently, etcd streams its own)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			out, err := server.SaveSnapshot(cmd.Context(), cfg, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "saved %s in %s\n", out, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	save.Flags().StringVar(&name, "name", server.OnDemandSnapshotPrefix, "Name the snapshot starts with")
	list := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the snapshots",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			snaps, err := datastore.ListSnapshots(cfg.Snapshots())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSIZE\tCREATED")
			for _, s := range snaps {
				fmt.Fprintf(w, "%s\t%d\t%s\n", s.Path, s.Size, s.Created.UTC().Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete all but the newest --snapshot-retention snapshots named --name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			deleted, err := datastore.PruneSnapshots(cfg.Snapshots(), name, retention)
			for _, d := range deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", d)
			}
			return err
		},
	}
	prune.Flags().StringVar(&name, "name", server.OnDemandSnapshotPrefix, "Name of the snapshots to prune")
	prune.Flags().IntVar(&retention, "snapshot-retention", config.DefaultSnapshotRetention, "How many to keep")
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a snapshot into the stopped server (its current datastore is kept aside)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lock, err := server.LockDataDir(cfg.ServerDir())
			if err != nil {
				return err
			}
			defer lock.Close()
			switch filepath.Ext(args[0]) {
			case datastore.SQLiteSnapshotExt:
				if datastore.HasData(cfg.EtcdDataDir()) {
					return fmt.Errorf("%s is a SQLite snapshot, and this server's datastore is embedded etcd: nothing was changed", args[0])
				}
				err = datastore.RestoreSQLite(args[0], filepath.Join(cfg.DBDir(), "state.db"), time.Now(), func(format string, args ...any) {
					fmt.Fprintf(cmd.OutOrStdout(), format+"\n", args...)
				})
			case datastore.EtcdSnapshotExt:
				err = fmt.Errorf("an embedded etcd snapshot is restored by the server, which knows its member: start it with --cluster-reset-restore-path %s (nothing was changed)", args[0])
			default:
				err = fmt.Errorf("%s is not a snapshot (want a %s or %s file from skiff datastore snapshot save): nothing was changed", args[0], datastore.SQLiteSnapshotExt, datastore.EtcdSnapshotExt)
			}
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "restored %s; start skiff server\n", args[0])
			}
			return err
		},
	}
	cmd.AddCommand(save, list, prune, restore)
	return cmd
}
