package deb

import (
	"fmt"
	"strings"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// DebFilename is the file name apt gives a downloaded .deb:
// NAME_VERSION_ARCH.deb with the epoch's ':' written "%3a".
func DebFilename(name, version, arch string) string {
	return name + "_" + strings.ReplaceAll(version, ":", "%3a") + "_" + arch + ".deb"
}

// Pin is one selected entry as a deps.Package: URL mirror/Filename, the
// index's SHA256 and Size, Platform the entry's architecture ("amd64" or
// "all"), Path "debs/" + DebFilename.
func Pin(mirror string, e *Entry) deps.Package {
	if mirror == "" {
		mirror = DefaultMirror
	}
	return deps.Package{
		Name:     e.Name,
		Version:  e.Version,
		Platform: e.Architecture,
		URL:      strings.TrimRight(mirror, "/") + "/" + e.Filename,
		SHA256:   e.SHA256,
		Size:     e.Size,
		Path:     "debs/" + DebFilename(e.Name, e.Version, e.Architecture),
	}
}

// Pins returns the resolution's packages as pins from the index's mirror,
// sorted by Path (deps.Sort), each validated.
func (ix *Index) Pins(res *Resolution) ([]deps.Package, error) {
	out := make([]deps.Package, 0, len(res.Packages))
	for _, s := range res.Packages {
		p := Pin(ix.Source.Mirror, s.Entry)
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("pinning %s: %w: %v", s.ID(), errs.ErrDependency, err)
		}
		out = append(out, p)
	}
	return deps.Sort(out), nil
}
