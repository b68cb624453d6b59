// Command vmbuild-helper is vmbuild's static program inside build steps:
// it applies one patch (patch.HelperMain), or installs pinned
// dependencies (install.HelperMain).
package main

import (
	"os"

	"github.com/vmbuild/vmbuild/deps/install"
	"github.com/vmbuild/vmbuild/patch"
)

func main() {
	if len(os.Args) > 1 && install.IsCommand(os.Args[1]) {
		os.Exit(install.HelperMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(patch.HelperMain(os.Args[1:], os.Stdout, os.Stderr))
}
