package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/pkg/config"
	"github.com/skiff-dev/skiff/pkg/pki"
	"github.com/skiff-dev/skiff/pkg/server"
)

// newCertificateCommand checks the expiry of the certificates in a data
// dir and rotates the server's leaf certificates (k3s's
// `certificate check|rotate`).
func newCertificateCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "certificate",
		Short: "Check the certificates' expiry, and rotate the server's",
	}
	cmd.PersistentFlags().StringVarP(&dataDir, "data-dir", "d", config.DefaultDataDir, "The data dir")
	var output string
	check := &cobra.Command{
		Use:   "check",
		Short: "List every certificate with its expiry and days left",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certs, err := pki.Inventory(filepath.Join(dataDir, "server", "tls"), filepath.Join(dataDir, "agent", "tls"))
			if err != nil {
				return err
			}
			if len(certs) == 0 {
				return fmt.Errorf("no certificates under %s: give the data dir with --data-dir (as root)", dataDir)
			}
			now := time.Now()
			switch output {
			case "json":
				type row struct {
					File     string    `json:"file"`
					Subject  string    `json:"subject"`
					NotAfter time.Time `json:"notAfter"`
					DaysLeft int       `json:"daysLeft"`
					Status   string    `json:"status"`
					CA       bool      `json:"ca"`
				}
				var rows []row
				for _, c := range certs {
					rows = append(rows, row{c.Path, c.Subject, c.NotAfter, c.DaysLeft(now), c.Status(now), c.IsCA})
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			case "table":
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "FILE\tSUBJECT\tEXPIRES\tDAYS LEFT\tSTATUS")
				for _, c := range certs {
					rel, _ := filepath.Rel(dataDir, c.Path)
					subject := c.Subject
					if c.IsCA {
						subject += " (CA)"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", rel, subject, c.NotAfter.UTC().Format(time.DateOnly), c.DaysLeft(now), c.Status(now))
				}
				return w.Flush()
			}
			return fmt.Errorf("--output %q: want table or json", output)
		},
	}
	check.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	var services []string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Move the server's leaf certificates aside so that its next start issues new ones (stop the server first)",
		Long: "Moves the named services' certificates and keys (all, without --service) into <data-dir>/server/tls/rotated-<time>/; " +
			"the next start of skiff server issues new ones from the same CAs. Nodes renew theirs at every start.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			serverDir := filepath.Join(dataDir, "server")
			lock, err := server.LockDataDir(serverDir)
			if err != nil {
				return err
			}
			defer lock.Close()
			backup, moved, err := pki.Rotate(pki.Dir(filepath.Join(serverDir, "tls")), services, time.Now())
			if err != nil {
				return err
			}
			if len(moved) == 0 {
				return fmt.Errorf("no certificates to rotate in %s: is it a server's data dir?", serverDir)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "moved %d files to %s; start skiff server to issue new certificates\n", len(moved), backup)
			return nil
		},
	}
	rotate.Flags().StringSliceVarP(&services, "service", "s", nil, "Services whose certificates to rotate: admin, api-server, auth-proxy, controller-manager, scheduler, etcd (repeatable; default all)")
	cmd.AddCommand(check, rotate)
	return cmd
}
