package deb

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// Entry is one binary package of a Packages index: the fields resolving
// and pinning need. Relation fields are kept as written and parsed when
// the resolver first looks at them.
type Entry struct {
	Name         string
	Version      string
	Architecture string // the native architecture or "all"
	// MultiArch is "same", "foreign", "allowed" or "" (no).
	MultiArch string
	Essential bool
	Priority  string
	Source    string
	Component string

	Depends, PreDepends, Provides, Conflicts, Breaks string

	Filename string // pool/main/n/nodejs/nodejs_24.….deb
	Size     int64
	SHA256   string

	parsed   sync.Once
	rels     map[string][]Relation
	parseErr error
}

// ID is "name=version", the name the resolver's messages use.
func (e *Entry) ID() string { return e.Name + "=" + e.Version }

func (e *Entry) relations(field string) ([]Relation, error) {
	e.parsed.Do(func() {
		e.rels = map[string][]Relation{}
		for _, f := range []struct {
			name, value string
		}{{"Pre-Depends", e.PreDepends}, {"Depends", e.Depends}, {"Provides", e.Provides}, {"Conflicts", e.Conflicts}, {"Breaks", e.Breaks}} {
			if f.value == "" {
				continue
			}
			r, err := ParseRelations(f.value)
			if err != nil {
				e.parseErr = fmt.Errorf("package %s field %s: %w", e.ID(), f.name, err)
				return
			}
			e.rels[f.name] = r
		}
	})
	return e.rels[field], e.parseErr
}

// IndexFile names one Packages file an Index was read from, as a lock
// records it.
type IndexFile struct {
	Path   string // relative to dists/SUITE: main/binary-amd64/Packages.xz
	URL    string
	Size   int64
	SHA256 string
}

// Index is a verified suite: its Release and the packages of the
// source's components for its architecture (and "all").
type Index struct {
	Source  Source
	Release *Release
	Files   []IndexFile

	entries []*Entry
	byName  map[string][]*Entry // highest version first

	provOnce  sync.Once
	providers map[string][]provided
	provErr   error
}

type provided struct {
	by      *Entry
	version string // "" for an unversioned provide
	qual    string
}

// Open fetches and verifies the source's InRelease, then downloads each
// component's Packages file for the architecture (xz, else gz, else
// plain: whatever the Release lists), checks its size and sha256 against
// the Release, and parses it.
func Open(ctx context.Context, src Source, opts ...Option) (*Index, error) {
	c := newConfig(opts)
	rel, err := fetchRelease(ctx, src, c)
	if err != nil {
		return nil, err
	}
	src = src.withDefaults()
	if rel.Expired {
		c.log.Warn("accepted an expired Debian index (allow-expired)", "suite", src.Suite, "valid_until", rel.ValidUntil)
	}
	ix := &Index{Source: src, Release: rel}
	archs := []string{src.Arch}
	if !rel.NoArchAllPackages && containsStr(rel.Architectures, "all") {
		archs = append(archs, "all")
	}
	if len(rel.Architectures) > 0 && !containsStr(rel.Architectures, src.Arch) {
		return nil, fmt.Errorf("opening Debian index %s: %w: the suite has no architecture %s (it has %s)", src, errs.ErrDependency, src.Arch, strings.Join(rel.Architectures, " "))
	}
	for _, comp := range src.Components {
		for _, arch := range archs {
			entries, f, err := fetchPackages(ctx, c, src, rel, comp, arch)
			if err != nil {
				return nil, fmt.Errorf("opening Debian index %s: %w", src, err)
			}
			ix.Files = append(ix.Files, f)
			ix.entries = append(ix.entries, entries...)
		}
	}
	ix.build()
	return ix, nil
}

// NewIndex makes an index from entries already read (ParsePackages), for
// tests and for callers with their own transport. rel may be nil.
func NewIndex(src Source, rel *Release, entries []*Entry) *Index {
	ix := &Index{Source: src.withDefaults(), Release: rel, entries: entries}
	ix.build()
	return ix
}

func (ix *Index) build() {
	ix.byName = make(map[string][]*Entry, len(ix.entries))
	for _, e := range ix.entries {
		ix.byName[e.Name] = append(ix.byName[e.Name], e)
	}
	for _, es := range ix.byName {
		if len(es) > 1 {
			sort.SliceStable(es, func(i, j int) bool { return CompareVersions(es[i].Version, es[j].Version) > 0 })
		}
	}
}

// Len is the number of package entries.
func (ix *Index) Len() int { return len(ix.entries) }

// Lookup returns the entries of a real package, highest version first.
func (ix *Index) Lookup(name string) []*Entry { return ix.byName[name] }

func (ix *Index) providersOf(name string) ([]provided, error) {
	ix.provOnce.Do(func() {
		ix.providers = map[string][]provided{}
		var errList []error
		for _, e := range ix.entries {
			if e.Provides == "" {
				continue
			}
			rels, err := e.relations("Provides")
			if err != nil {
				errList = append(errList, err)
				continue
			}
			for _, r := range rels {
				for _, d := range r {
					v := ""
					if d.Op == OpEQ {
						v = d.Version
					}
					ix.providers[d.Name] = append(ix.providers[d.Name], provided{by: e, version: v, qual: d.ArchQual})
				}
			}
		}
		ix.provErr = errors.Join(errList...)
	})
	return ix.providers[name], ix.provErr
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func fetchPackages(ctx context.Context, c *config, src Source, rel *Release, comp, arch string) ([]*Entry, IndexFile, error) {
	base := comp + "/binary-" + arch + "/Packages"
	plain, hasPlain := rel.Files[base]
	// The file a lock names is the one a download would use (the first
	// of .xz, .gz, plain the Release lists), cache or not.
	var named IndexFile
	for _, ext := range []string{".xz", ".gz", ""} {
		if sum, ok := rel.Files[base+ext]; ok {
			named = IndexFile{Path: base + ext, URL: deps.RedactURL(src.Mirror + "/dists/" + src.Suite + "/" + base + ext), Size: sum.Size, SHA256: sum.SHA256}
			break
		}
	}
	// From the cache: the decompressed file, by its sha256.
	if c.cacheDir != "" && hasPlain {
		p := filepath.Join(c.cacheDir, "sha256", plain.SHA256)
		if f, err := os.Open(p); err == nil {
			start := time.Now()
			entries, err := parseVerified(f, base, plain, comp, src.Arch, c.maxIndex, nil)
			f.Close()
			if err == nil {
				c.log.Debug("read Packages from cache", "file", base, "entries", len(entries), "took", time.Since(start).Round(time.Millisecond))
				return entries, named, nil
			}
			c.log.Warn("ignoring a bad cached Packages file", "path", p, "error", err)
			os.Remove(p)
		}
	}
	var tried []string
	for _, ext := range []string{".xz", ".gz", ""} {
		sum, ok := rel.Files[base+ext]
		if !ok {
			continue
		}
		path := base + ext
		url := src.Mirror + "/dists/" + src.Suite + "/" + path
		urls := []string{url}
		if rel.AcquireByHash {
			urls = []string{src.Mirror + "/dists/" + src.Suite + "/" + comp + "/binary-" + arch + "/by-hash/SHA256/" + sum.SHA256, url}
		}
		var body []byte
		var got string
		var err error
		start := time.Now()
		for _, u := range urls {
			body, err = httpGet(ctx, c, u, max(sum.Size, 1<<20))
			if err == nil {
				got = u
				break
			}
			if !errors.Is(err, errNotFound) {
				return nil, IndexFile{}, err
			}
		}
		if err != nil {
			tried = append(tried, path)
			continue
		}
		c.log.Debug("fetched Packages", "url", got, "bytes", len(body), "took", time.Since(start).Round(time.Millisecond))
		h := sha256.Sum256(body)
		actual := hex.EncodeToString(h[:])
		if int64(len(body)) != sum.Size || actual != sum.SHA256 {
			return nil, IndexFile{}, fmt.Errorf("verifying %s: %w", path, &deps.HashError{
				Package:  "dists/" + src.Suite + "/" + path,
				URL:      deps.RedactURL(got),
				Source:   "InRelease SHA256 (" + rel.SHA256[:12] + "…)",
				Expected: fmt.Sprintf("sha256:%s (%d bytes)", sum.SHA256, sum.Size),
				Actual:   fmt.Sprintf("sha256:%s (%d bytes)", actual, len(body)),
			})
		}
		r, err := decompressor(ext, bytes.NewReader(body))
		if err != nil {
			return nil, IndexFile{}, fmt.Errorf("decompressing %s: %w: %v", path, errs.ErrDependency, err)
		}
		var cacheTmp *os.File
		if c.cacheDir != "" && hasPlain {
			dir := filepath.Join(c.cacheDir, "sha256")
			if err := os.MkdirAll(dir, 0o755); err == nil {
				cacheTmp, _ = os.CreateTemp(dir, ".packages-*")
			}
		}
		var plainWant *FileSum
		if hasPlain && ext != "" {
			plainWant = &plain
		}
		pstart := time.Now()
		tee := &teeOpts{plain: plainWant, plainName: base}
		if cacheTmp != nil {
			tee.cache = &bestEffort{w: cacheTmp}
		}
		entries, err := parseVerified(r, path, FileSum{}, comp, src.Arch, c.maxIndex, tee)
		if cacheTmp != nil {
			if cerr := cacheTmp.Close(); cerr != nil && tee.cache.err == nil {
				tee.cache.err = cerr
			}
			if err == nil && tee.cache.err == nil {
				os.Rename(cacheTmp.Name(), filepath.Join(c.cacheDir, "sha256", plain.SHA256))
			}
			os.Remove(cacheTmp.Name())
		}
		if err != nil {
			return nil, IndexFile{}, err
		}
		c.log.Debug("parsed Packages", "file", path, "entries", len(entries), "took", time.Since(pstart).Round(time.Millisecond))
		return entries, IndexFile{Path: path, URL: deps.RedactURL(url), Size: sum.Size, SHA256: sum.SHA256}, nil
	}
	if len(tried) > 0 {
		return nil, IndexFile{}, fmt.Errorf("fetching %s: %w: %s not found on the mirror", base, errs.ErrDependency, strings.Join(tried, ", "))
	}
	return nil, IndexFile{}, fmt.Errorf("fetching %s: %w: the Release lists no %s(.xz|.gz) (component %q or architecture %q not in the suite?)", base, errs.ErrDependency, base, comp, arch)
}

func decompressor(ext string, r io.Reader) (io.Reader, error) {
	switch ext {
	case ".xz":
		return xz.NewReader(r)
	case ".gz":
		return gzip.NewReader(r)
	}
	return r, nil
}

type teeOpts struct {
	plain     *FileSum
	plainName string
	cache     *bestEffort // nil: no cache
}

// parseVerified parses a Packages stream, hashing it as it goes; want (if
// set) or tee.plain is checked at the end, and nothing is returned on a
// mismatch.
func parseVerified(r io.Reader, name string, want FileSum, comp, arch string, max int64, tee *teeOpts) ([]*Entry, error) {
	var h hash.Hash
	check := want
	checkName := name
	if want.SHA256 != "" {
		h = sha256.New()
	}
	var ws []io.Writer
	if tee != nil && tee.plain != nil {
		h = sha256.New()
		check, checkName = *tee.plain, tee.plainName
	}
	if h != nil {
		ws = append(ws, h)
	}
	if tee != nil && tee.cache != nil {
		ws = append(ws, tee.cache)
	}
	cr := &countingReader{r: io.LimitReader(r, max+1)}
	var src io.Reader = cr
	if len(ws) > 0 {
		src = io.TeeReader(cr, io.MultiWriter(ws...))
	}
	entries, err := ParsePackages(src, name, comp, arch)
	if err != nil {
		return nil, err
	}
	// Drain what the parser did not read (trailing blank lines).
	if _, err := io.Copy(io.Discard, src); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if cr.n > max {
		return nil, fmt.Errorf("reading %s: %w", name, &errs.LimitError{Limit: fmt.Sprintf("Packages size (%d bytes)", max)})
	}
	if h != nil {
		actual := hex.EncodeToString(h.Sum(nil))
		if actual != check.SHA256 || cr.n != check.Size {
			return nil, fmt.Errorf("verifying %s: %w", checkName, &deps.HashError{
				Package:  checkName,
				URL:      name,
				Source:   "InRelease SHA256",
				Expected: fmt.Sprintf("sha256:%s (%d bytes)", check.SHA256, check.Size),
				Actual:   fmt.Sprintf("sha256:%s (%d bytes)", actual, cr.n),
			})
		}
	}
	return entries, nil
}

// bestEffort writes to w until the first error, then drops the rest: a
// cache that cannot be written must not fail the read it mirrors.
type bestEffort struct {
	w   io.Writer
	err error
}

func (b *bestEffort) Write(p []byte) (int, error) {
	if b.err == nil {
		_, b.err = b.w.Write(p)
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

var packagesFields = map[string]bool{
	"Package": true, "Version": true, "Architecture": true, "Multi-Arch": true,
	"Essential": true, "Priority": true, "Source": true,
	"Depends": true, "Pre-Depends": true, "Provides": true, "Conflicts": true, "Breaks": true,
	"Filename": true, "Size": true, "SHA256": true,
}

// ParsePackages parses a Packages file, keeping the entries for arch and
// "all". name names the file in messages; comp is recorded in each entry.
func ParsePackages(r io.Reader, name, comp, arch string) ([]*Entry, error) {
	var out []*Entry
	keep := func(f []byte) bool { return packagesFields[string(f)] }
	err := readParagraphs(r, name, keep, func(p *paragraph) error {
		e := &Entry{Component: comp}
		for _, f := range p.fields {
			switch f.name {
			case "Package":
				e.Name = f.value
			case "Version":
				e.Version = f.value
			case "Architecture":
				e.Architecture = f.value
			case "Multi-Arch":
				e.MultiArch = f.value
			case "Essential":
				e.Essential = f.value == "yes"
			case "Priority":
				e.Priority = f.value
			case "Source":
				e.Source = f.value
			case "Depends":
				e.Depends = f.value
			case "Pre-Depends":
				e.PreDepends = f.value
			case "Provides":
				e.Provides = f.value
			case "Conflicts":
				e.Conflicts = f.value
			case "Breaks":
				e.Breaks = f.value
			case "Filename":
				e.Filename = f.value
			case "Size":
				n, err := strconv.ParseInt(f.value, 10, 64)
				if err != nil {
					return fmt.Errorf("reading %s: line %d: package %s: bad Size %q", name, p.Line, e.Name, f.value)
				}
				e.Size = n
			case "SHA256":
				e.SHA256 = f.value
			}
		}
		if e.Architecture != arch && e.Architecture != "all" {
			return nil
		}
		switch {
		case e.Name == "" || e.Version == "":
			return fmt.Errorf("reading %s: line %d: stanza without Package or Version", name, p.Line)
		case e.Filename == "" || strings.HasPrefix(e.Filename, "/") || strings.Contains("/"+e.Filename+"/", "/../"):
			return fmt.Errorf("reading %s: line %d: package %s has a bad Filename %q", name, p.Line, e.ID(), e.Filename)
		case !deps.IsSHA256(e.SHA256):
			return fmt.Errorf("reading %s: line %d: package %s has no SHA256", name, p.Line, e.ID())
		}
		if _, err := ParseVersion(e.Version); err != nil {
			return fmt.Errorf("reading %s: line %d: package %s: %v", name, p.Line, e.Name, err)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("parsing Packages: %w: %w", errs.ErrDependency, err)
	}
	return out, nil
}
