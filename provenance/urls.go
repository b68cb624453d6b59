package provenance

import (
	"strings"

	"github.com/vmbuild/vmbuild/internal/redact"
)

// GitURI renders a (sanitized) git remote and ref as a SLSA/SPDX download
// location: "git+<url>@<ref>". scp-like remotes become ssh:// URLs;
// git:// URLs and URLs already prefixed with "git+" are not prefixed again.
// An empty ref leaves out "@<ref>".
func GitURI(repo, ref string) string {
	u := repo
	if user, host, path, ok := redact.SplitSCP(repo); ok {
		if user != "" {
			user += "@"
		}
		u = "ssh://" + user + host + "/" + strings.TrimPrefix(path, "/")
	}
	if !strings.HasPrefix(u, "git+") && !strings.HasPrefix(u, "git://") {
		u = "git+" + u
	}
	if ref != "" {
		u += "@" + ref
	}
	return u
}
