package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/buildkit"
)

func (a *app) daemonCommand() *cobra.Command {
	var conn connFlags
	cmd := &cobra.Command{
		Use:   "daemon start|stop|status",
		Short: "Control vmbuild's managed local buildkitd",
		Long: `vmbuild starts a local buildkitd by itself when no --addr (or BUILDKIT_HOST) is
given, and reuses it across runs. Its state (build cache), socket, config and
log live in the state directory (default ~/.cache/vmbuild/buildkitd). It runs
buildkitd with the OCI worker (runc) and the overlayfs snapshotter, as root.`,
	}
	conn.register(cmd.PersistentFlags())
	cmd.AddCommand(&cobra.Command{
		Use:   "start",
		Short: "Start the managed buildkitd (or report the running one)",
		Args:  usageArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := buildkit.StartDaemon(cmd.Context(), conn.daemonOptions(a))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "buildkitd %s running (pid %d) at %s\n", d.Version, d.PID, d.Addr)
			return nil
		},
	}, &cobra.Command{
		Use:   "stop",
		Short: "Stop the managed buildkitd",
		Args:  usageArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := buildkit.StopDaemon(cmd.Context(), conn.daemonOptions(a)); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "buildkitd stopped")
			return nil
		},
	})
	var jsonOut bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Report whether the managed buildkitd runs",
		Args:  usageArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := buildkit.DaemonStatus(cmd.Context(), conn.daemonOptions(a))
			if err != nil {
				return err
			}
			if jsonOut {
				return json.NewEncoder(a.stdout).Encode(d)
			}
			if !d.Running {
				fmt.Fprintf(a.stdout, "buildkitd is not running (state %s)\n", d.StateDir)
				return withCode(3, fmt.Errorf("managed buildkitd is not running"))
			}
			fmt.Fprintf(a.stdout, "buildkitd %s running (pid %d)\n  address: %s\n  state:   %s\n  log:     %s\n", d.Version, d.PID, d.Addr, d.StateDir, d.LogFile)
			return nil
		},
	}
	status.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	cmd.AddCommand(status)
	return cmd
}
