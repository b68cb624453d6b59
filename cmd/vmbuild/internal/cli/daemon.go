package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmbuild/vmbuild/buildkit"
)

// daemonJob is `vmbuild daemon start|stop|status`.
type daemonJob struct {
	action string
	opts   buildkit.DaemonOptions
	json   bool
}

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
	var jsonOut bool
	for _, sub := range []struct{ name, short string }{
		{"start", "Start the managed buildkitd (or report the running one)"},
		{"stop", "Stop the managed buildkitd"},
		{"status", "Report whether the managed buildkitd runs"},
	} {
		c := &cobra.Command{
			Use:   sub.name,
			Short: sub.short,
			Args:  usageArgs(0),
			RunE: func(cmd *cobra.Command, args []string) error {
				return a.run(cmd.Context(), &daemonJob{action: sub.name, opts: conn.daemonOptions(a), json: jsonOut})
			},
		}
		if sub.name == "status" {
			c.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
		}
		cmd.AddCommand(c)
	}
	return cmd
}

func (j *daemonJob) run(ctx context.Context, a *app) error {
	switch j.action {
	case "start":
		d, err := buildkit.StartDaemon(ctx, j.opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "buildkitd %s running (pid %d) at %s\n", d.Version, d.PID, d.Addr)
		return nil
	case "stop":
		if err := buildkit.StopDaemon(ctx, j.opts); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, "buildkitd stopped")
		return nil
	}
	d, err := buildkit.DaemonStatus(ctx, j.opts)
	if err != nil {
		return err
	}
	if j.json {
		return json.NewEncoder(a.stdout).Encode(d)
	}
	if !d.Running {
		fmt.Fprintf(a.stdout, "buildkitd is not running (state %s)\n", d.StateDir)
		return withCode(3, fmt.Errorf("managed buildkitd is not running"))
	}
	fmt.Fprintf(a.stdout, "buildkitd %s running (pid %d)\n  address: %s\n  state:   %s\n  log:     %s\n", d.Version, d.PID, d.Addr, d.StateDir, d.LogFile)
	return nil
}
