// Command testsvc starts and stops the buildkitd that `make test` shares
// between all test binaries (exported to them as VMBUILD_TEST_BUILDKIT_ADDR),
// through package buildkit's managed-daemon code and with the options
// internal/testenv uses for its own daemons.
//
//	testsvc start -state DIR -buildkitd BIN   # prints the address
//	testsvc stop -state DIR
//	testsvc sweep ROOT                        # stops every daemon whose state is under ROOT
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/internal/testenv"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "start":
		err = start(os.Args[2:])
	case "stop":
		err = stop(os.Args[2:])
	case "sweep":
		err = sweep(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsvc:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testsvc start -state DIR -buildkitd BIN | stop -state DIR | sweep ROOT")
	os.Exit(2)
}

func start(args []string) error {
	fs := flag.NewFlagSet("start", flag.ExitOnError)
	state := fs.String("state", "", "state directory")
	bin := fs.String("buildkitd", "bin/buildkitd", "buildkitd binary")
	_ = fs.Parse(args)
	if *state == "" {
		return fmt.Errorf("start: -state is required")
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return err
	}
	if err := testenv.CheckStateDir(*state); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := buildkit.StartDaemon(ctx, testenv.DaemonOptions(*state, abs))
	if err != nil {
		return err
	}
	fmt.Println(d.Addr)
	return nil
}

func stop(args []string) error {
	fs := flag.NewFlagSet("stop", flag.ExitOnError)
	state := fs.String("state", "", "state directory")
	_ = fs.Parse(args)
	if *state == "" {
		return fmt.Errorf("stop: -state is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return buildkit.StopDaemon(ctx, buildkit.DaemonOptions{StateDir: *state})
}

// sweep stops every managed buildkitd whose state directory lies under
// root, at most four levels down (the shared daemon, and per-test daemons
// whose test binary died before its watchdog could act), cleans up their
// state (containers, mounts), and unmounts whatever else is mounted under
// root (buildkitd's temporary mounts), so that root can be removed safely.
func sweep(args []string) error {
	if len(args) != 1 {
		usage()
	}
	root, err := filepath.Abs(args[0])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var states []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && strings.Count(strings.TrimPrefix(p, root), string(filepath.Separator)) > 4 {
			return filepath.SkipDir
		}
		if d.IsDir() && d.Name() == "root" {
			return filepath.SkipDir // buildkitd's own root: snapshots, not state files
		}
		if !d.IsDir() && d.Name() == "buildkitd.toml" {
			states = append(states, filepath.Dir(p))
		}
		return nil
	})
	var errs []error
	for _, dir := range states {
		pidFile := filepath.Join(dir, "buildkitd.pid")
		if isOurDaemon(pidFile, dir) {
			if err := buildkit.StopDaemon(ctx, buildkit.DaemonOptions{StateDir: dir}); err != nil {
				errs = append(errs, err)
			}
			fmt.Fprintln(os.Stderr, "testsvc: stopped buildkitd in", dir)
		}
		if err := testenv.CleanupState(dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := testenv.UnmountAll(root); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// isOurDaemon checks that the pid file names a live buildkitd started with
// this state directory's config, so that a stale pid file never leads to
// signalling an unrelated process.
func isOurDaemon(pidFile, dir string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(b)), "cmdline"))
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 0 && filepath.Base(args[0]) == "buildkitd" &&
		strings.Contains(string(cmdline), filepath.Join(dir, "buildkitd.toml"))
}
