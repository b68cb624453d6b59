// Command vmbuild-helper applies one vmbuild patch inside a build step.
// See patch.HelperMain.
package main

import (
	"os"

	"github.com/vmbuild/vmbuild/patch"
)

func main() { os.Exit(patch.HelperMain(os.Args[1:], os.Stdout, os.Stderr)) }
