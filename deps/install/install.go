// Package install is the part of vmbuild-helper that runs inside build
// steps for pinned dependencies. Every byte it touches was fetched by
// BuildKit, by checksum, before the step ran; the steps have no network.
//
//	deps-run      runs a layer's install command with its pinned packages
//	              served from a loopback mirror (npm, Yarn Berry), laid out
//	              as an offline mirror (Yarn v1) or a gem cache (Bundler),
//	              and the pinned package manager on PATH
//	deb-unpack    unpacks one pinned .deb (deps/deb.Extract)
//	deb-finalize  adds to the unpacked packages what their maintainer
//	              scripts would have: merged-/usr links, alternatives, the
//	              CA bundle, accounts, the recipe's files
package install

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes of HelperMain.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

const usage = `usage:
  vmbuild-helper deps-run --manager M --mirror DIR --lockfile F --lockfile-sha256 HEX [--tool TGZ --tool-entry PATH] [--tool-name NAME] -- COMMAND [ARG...]
  vmbuild-helper deb-unpack --deb FILE --sha256 HEX --package ID --url URL --out DIR
  vmbuild-helper deb-finalize --root DIR --arch ARCH [--accounts JSON] [--files JSON]
`

// IsCommand reports whether name is one of this package's subcommands.
func IsCommand(name string) bool {
	switch name {
	case "deps-run", "deb-unpack", "deb-finalize":
		return true
	}
	return false
}

// HelperMain runs one subcommand (args[0]) and returns the exit code.
// deps-run exits with its command's code.
func HelperMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var code int
	var err error
	switch args[0] {
	case "deps-run":
		code, err = depsRun(ctx, args[1:], stdout, stderr)
	case "deb-unpack":
		err = debUnpack(ctx, args[1:])
	case "deb-finalize":
		err = debFinalize(ctx, args[1:], stdout)
	default:
		fmt.Fprintf(stderr, "vmbuild-helper: unknown command %q\n%s", args[0], usage)
		return ExitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "vmbuild-helper %s: %v\n", args[0], err)
		if _, ok := err.(usageError); ok {
			return ExitUsage
		}
		if code == 0 {
			code = ExitError
		}
	}
	return code
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
