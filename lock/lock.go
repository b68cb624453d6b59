// Package lock reads, writes, checks and resolves vmbuild lock files.
//
// A lock file (NAME.lock.json beside the recipe) pins every input of a
// recipe, Nix-flake style: the upstream commit and its commit time (the
// build's SOURCE_DATE_EPOCH), the base image digest (per platform), the
// images a Dockerfile uses and its `# syntax=` frontend, and the sha256 of
// the recipe and of each patch. Builds refuse a lock that no longer matches
// its recipe.
package lock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/recipe"
)

// Version is the lock format version this package writes.
const Version = 1

// Lock is the content of a lock file. Field order is the file's order.
type Lock struct {
	LockVersion int       `json:"lockVersion"`
	Recipe      RecipePin `json:"recipe"`
	Upstream    Upstream  `json:"upstream"`
	Base        *ImagePin `json:"base,omitempty"`
	// Debian pins a base assembled from Debian packages.
	Debian   *DebianPin `json:"debian,omitempty"`
	Frontend *ImagePin  `json:"frontend,omitempty"`
	Images   []ImagePin `json:"images,omitempty"`
	Patches  []PatchPin `json:"patches"`
	// Deps pins NAME.deps.lock.json, which holds every package the build
	// downloads (the Debian base's .debs, the layers' dependencies).
	Deps *DepsPin `json:"deps,omitempty"`

	// DepsLock is the content of the file Deps pins: loaded by Read,
	// written by Write.
	DepsLock *DepsLock `json:"-"`
}

// RecipePin records the recipe the lock was made from.
type RecipePin struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// Upstream pins the git source.
type Upstream struct {
	URL        string    `json:"url"`
	Ref        string    `json:"ref"`
	Commit     string    `json:"commit"`
	CommitTime time.Time `json:"commitTime"`
}

// ImagePin pins an image reference to a digest.
type ImagePin struct {
	// Ref is the reference as the recipe or Dockerfile names it, normalized
	// (docker.io/library/node:22), or an oci-layout:// reference.
	Ref string `json:"ref"`
	// Digest is what Ref pointed to when locked: an index or a manifest.
	Digest string `json:"digest"`
	// Platforms maps each platform of an index to its manifest digest.
	Platforms map[string]string `json:"platforms,omitempty"`
}

// PatchPin pins one patch's content.
type PatchPin struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
}

// Epoch is the build's SOURCE_DATE_EPOCH: the locked commit's time.
func (l *Lock) Epoch() int64 { return l.Upstream.CommitTime.Unix() }

// ShortCommit is the first 12 characters of the commit.
func (l *Lock) ShortCommit() string {
	if len(l.Upstream.Commit) > 12 {
		return l.Upstream.Commit[:12]
	}
	return l.Upstream.Commit
}

// Pinned returns ref@digest for an image pin, keeping the tag for
// readability (name:tag@sha256:… is a valid reference).
func (p ImagePin) Pinned() string {
	if p.Digest == "" {
		return p.Ref
	}
	if i := strings.LastIndex(p.Ref, "@"); i >= 0 {
		return p.Ref[:i] + "@" + p.Digest
	}
	return p.Ref + "@" + p.Digest
}

// ImageFor returns the pin for ref among the Dockerfile images.
func (l *Lock) ImageFor(ref string) (ImagePin, bool) {
	for _, p := range l.Images {
		if p.Ref == ref {
			return p, true
		}
	}
	return ImagePin{}, false
}

// Marshal renders the lock in its stable on-disk form: two-space indented
// JSON, fields in a fixed order, map keys sorted, a final newline.
func (l *Lock) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		return nil, fmt.Errorf("encoding lock: %w", err)
	}
	return buf.Bytes(), nil
}

// Read loads and validates a lock file.
func Read(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading lock: %w: %s does not exist; run `vmbuild lock` to create it", errs.ErrLockMissing, path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading lock: %w", err)
	}
	l, err := Parse(path, b)
	if err != nil {
		return nil, err
	}
	if err := l.readDeps(path); err != nil {
		return nil, err
	}
	return l, nil
}

// Parse decodes and validates lock bytes; file names it in errors.
func Parse(file string, b []byte) (*Lock, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var l Lock
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("reading lock %s: %w: %v", file, errs.ErrInvalidLock, err)
	}
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("reading lock %s: %w: %v", file, errs.ErrInvalidLock, err)
	}
	return &l, nil
}

func (l *Lock) validate() error {
	if l.LockVersion != Version {
		return fmt.Errorf("lockVersion %d is not supported (this vmbuild writes %d)", l.LockVersion, Version)
	}
	if !IsCommit(l.Upstream.Commit) {
		return fmt.Errorf("upstream.commit %q is not a full commit hash (pin it with `vmbuild lock --commit SHA`)", l.Upstream.Commit)
	}
	if l.Upstream.CommitTime.IsZero() {
		return errors.New("upstream.commitTime is missing (run `vmbuild lock --commit SHA` to pin a commit by hand)")
	}
	for _, p := range append(append([]ImagePin{}, l.Images...), pinOrEmpty(l.Base), pinOrEmpty(l.Frontend)) {
		if p.Ref == "" {
			continue
		}
		if !validDigest(p.Digest) {
			return fmt.Errorf("image %s: digest %q is not sha256:<64 hex>", p.Ref, p.Digest)
		}
		for plat, d := range p.Platforms {
			if !validDigest(d) {
				return fmt.Errorf("image %s platform %s: digest %q is not sha256:<64 hex>", p.Ref, plat, d)
			}
		}
	}
	for i, p := range l.Patches {
		if len(p.SHA256) != 64 {
			return fmt.Errorf("patches[%d] (%s): sha256 %q is not 64 hex digits", i, p.Name, p.SHA256)
		}
	}
	if l.Deps != nil && !deps.IsSHA256(l.Deps.SHA256) {
		return fmt.Errorf("deps.sha256 %q is not 64 hex digits", l.Deps.SHA256)
	}
	if d := l.Debian; d != nil {
		switch {
		case d.Mirror == "" || d.Suite == "" || d.Architecture == "":
			return errors.New("debian: mirror, suite and architecture are required")
		case !deps.IsSHA256(d.InRelease.SHA256):
			return fmt.Errorf("debian.inRelease.sha256 %q is not 64 hex digits", d.InRelease.SHA256)
		}
	}
	return nil
}

func pinOrEmpty(p *ImagePin) ImagePin {
	if p == nil {
		return ImagePin{}
	}
	return *p
}

func validDigest(d string) bool {
	if !strings.HasPrefix(d, "sha256:") || len(d) != 71 {
		return false
	}
	for _, c := range d[7:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Write stores the lock atomically (write to a temporary file, rename),
// and first, when it has one, its dependency lock beside it (whose sha256
// it records in Deps).
func Write(path string, l *Lock) error {
	if l.DepsLock != nil && (l.DepsLock.Base != nil || len(l.DepsLock.Layers) > 0) {
		b, err := l.DepsLock.Marshal()
		if err != nil {
			return err
		}
		dp := DepsPath(path)
		if err := writeAtomic(dp, b); err != nil {
			return err
		}
		l.Deps = &DepsPin{File: filepath.Base(dp), SHA256: sha256Hex(b), Packages: l.DepsLock.Count()}
	} else {
		l.Deps = nil
	}
	b, err := l.Marshal()
	if err != nil {
		return err
	}
	return writeAtomic(path, b)
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".lock-*.json")
	if err != nil {
		return fmt.Errorf("writing lock: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing lock: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("writing lock: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing lock: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing lock: %w", err)
	}
	return nil
}

// StaleError lists the inputs that changed since the lock was written.
type StaleError struct {
	Lock    string
	Changes []string
}

func (e *StaleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lock file %s is stale: ", e.Lock)
	if len(e.Changes) == 1 {
		b.WriteString(e.Changes[0])
	} else {
		for _, c := range e.Changes {
			b.WriteString("\n  - ")
			b.WriteString(c)
		}
		b.WriteString("\n")
	}
	b.WriteString("; run `vmbuild lock` (keeps the pinned commit) or build with --update-lock")
	return b.String()
}

func (e *StaleError) Is(target error) bool { return target == errs.ErrLockStale }

// Check reports whether l still matches r: the recipe's and every patch's
// content, the upstream and the base. The error names each input that
// changed.
func Check(r *recipe.Recipe, l *Lock, lockPath string) error {
	var changes []string
	if l.Recipe.SHA256 != r.SHA256 {
		c := fmt.Sprintf("recipe %s changed since it was locked (sha256 %s, lock has %s)", filepath.Base(r.Path), short(r.SHA256), short(l.Recipe.SHA256))
		changes = append(changes, c)
	}
	if l.Upstream.URL != r.Upstream.Git {
		changes = append(changes, fmt.Sprintf("upstream.git is %q, lock has %q", r.Upstream.Git, l.Upstream.URL))
	}
	if l.Upstream.Ref != r.Upstream.Ref {
		changes = append(changes, fmt.Sprintf("upstream.ref is %q, lock has %q", r.Upstream.Ref, l.Upstream.Ref))
	}
	switch {
	case r.BaseDebian != nil && l.Debian == nil:
		changes = append(changes, "the Debian base is not in the lock")
	case r.BaseDebian != nil && (l.Debian.Suite != r.BaseDebian.Suite || l.Debian.Mirror != r.BaseDebian.Mirror):
		changes = append(changes, fmt.Sprintf("the Debian base is %s %s, lock has %s %s", r.BaseDebian.Mirror, r.BaseDebian.Suite, l.Debian.Mirror, l.Debian.Suite))
	case r.BaseDebian != nil && l.DepsLock == nil:
		changes = append(changes, "the Debian base's packages are not in the lock")
	}
	for _, lay := range r.Build.Layers {
		if lay.Deps == nil {
			continue
		}
		if _, ok := l.DepsLock.LayerDeps(lay.Name); !ok {
			changes = append(changes, fmt.Sprintf("layer %s's dependencies (%s) are not in the lock", lay.Name, lay.Deps.Lockfile))
		}
	}
	if r.NeedsBase() && r.BaseDebian == nil {
		switch {
		case l.Base == nil:
			changes = append(changes, fmt.Sprintf("base %q is not in the lock", r.Base))
		case l.Base.Ref != NormalizeImageRef(r.Base):
			changes = append(changes, fmt.Sprintf("base is %q, lock has %q", r.Base, l.Base.Ref))
		}
	}
	locked := map[string]PatchPin{}
	for _, p := range l.Patches {
		locked[p.Name] = p
	}
	for i, p := range r.Patches {
		lp, ok := locked[p.Name]
		switch {
		case !ok:
			changes = append(changes, fmt.Sprintf("patch %q (%s) is not in the lock", p.Name, p.File))
		case lp.SHA256 != p.SHA256:
			changes = append(changes, fmt.Sprintf("patch %q (%s) changed since it was locked (sha256 %s, lock has %s)", p.Name, p.File, short(p.SHA256), short(lp.SHA256)))
		case i < len(l.Patches) && l.Patches[i].Name != p.Name:
			changes = append(changes, fmt.Sprintf("patch %q moved to position %d", p.Name, i+1))
		}
		delete(locked, p.Name)
	}
	for _, p := range l.Patches {
		if _, ok := locked[p.Name]; ok {
			changes = append(changes, fmt.Sprintf("lock has patch %q, which the recipe no longer lists", p.Name))
		}
	}
	if len(changes) == 0 {
		return nil
	}
	return &StaleError{Lock: lockPath, Changes: changes}
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
