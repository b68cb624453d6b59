package gem

import (
	"context"
	"fmt"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// PinMode says which gems Pin downloads.
type PinMode int

const (
	// PinUnhashed downloads only gems without a CHECKSUMS sha256; the
	// others are pinned by the lockfile's checksum (BuildKit checks it
	// when it fetches).
	PinUnhashed PinMode = iota
	// PinAll downloads every gem, checking those with a CHECKSUMS entry
	// against it now, at lock time.
	PinAll
)

// Pin fills in each gem's SHA256 and Size by downloading it once with f
// (lock time only; a build never downloads outside BuildKit; nil f is a
// default deps.Fetcher), then validates every pin: afterwards each gem's
// Package passes deps.Package.Validate. A download that does not match
// its CHECKSUMS entry is a *deps.HashError (errs.ErrHashMismatch); a 404
// is errs.ErrDependency naming the gem and URL. All failures are
// returned, joined. On error the set's sums are unchanged.
func (s *Set) Pin(ctx context.Context, f *deps.Fetcher, mode PinMode) error {
	var reqs []deps.Request
	var idx []int
	for i, g := range s.Gems {
		if g.SHA256 != "" && mode == PinUnhashed {
			continue
		}
		r := deps.Request{ID: g.ID(), URL: g.URL}
		if g.Checksum != "" {
			in, err := deps.HexIntegrity("sha256", g.Checksum, s.Lockfile.Path+" CHECKSUMS")
			if err != nil {
				return fmt.Errorf("pinning gem %s: %w: %w", g.ID(), errs.ErrDependency, err)
			}
			r.Want = in
		}
		reqs = append(reqs, r)
		idx = append(idx, i)
	}
	if len(reqs) > 0 {
		if f == nil {
			f = &deps.Fetcher{}
		}
		sums, err := f.Hash(ctx, reqs)
		if err != nil {
			return fmt.Errorf("pinning gems of %s: %w", s.Lockfile.Path, err)
		}
		for k, i := range idx {
			s.Gems[i].SHA256 = sums[k].SHA256
			s.Gems[i].Size = sums[k].Size
		}
	}
	return s.Validate()
}

// Validate checks every gem's pin (deps.Package.Validate): after Pin,
// every gem has a sha256, an http(s) URL without credentials and a clean
// vendor/cache path.
func (s *Set) Validate() error {
	for _, g := range s.Gems {
		if err := g.Validate(); err != nil {
			return fmt.Errorf("validating gem pins of %s: %w: %w", s.Lockfile.Path, errs.ErrDependency, err)
		}
	}
	return nil
}
