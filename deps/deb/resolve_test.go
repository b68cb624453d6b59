package deb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/errs"
)

// A small synthetic index for the resolver's rules; real data follows.
const testPackages = `Package: app
Version: 1.0-1
Architecture: amd64
Depends: libfoo (>= 2), mta | mail-transport-agent, py:any, helper:native, libc6
Pre-Depends: dpkg-ish
Filename: pool/main/a/app/app_1.0-1_amd64.deb
Size: 100
SHA256: 0000000000000000000000000000000000000000000000000000000000000001

Package: libfoo
Version: 1:1.5-1
Architecture: amd64
Multi-Arch: same
Depends: libc6 (>= 2.38)
Filename: pool/main/libf/libfoo/libfoo_1.5-1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000002

Package: libfoo
Version: 1.9-1
Architecture: amd64
Filename: pool/main/libf/libfoo/libfoo_1.9-1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000003

Package: exim
Version: 4-1
Architecture: amd64
Provides: mail-transport-agent
Conflicts: mail-transport-agent
Priority: standard
Filename: pool/main/e/exim/exim_4-1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000004

Package: postfix
Version: 3-1
Architecture: amd64
Provides: mail-transport-agent
Conflicts: mail-transport-agent
Priority: optional
Filename: pool/main/p/postfix/postfix_3-1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000005

Package: py
Version: 3.13-1
Architecture: amd64
Multi-Arch: allowed
Filename: pool/main/p/py/py_3.13-1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000006

Package: helper
Version: 1
Architecture: all
Multi-Arch: foreign
Filename: pool/main/h/helper/helper_1_all.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000007

Package: libc6
Version: 2.41-12
Architecture: amd64
Filename: pool/main/g/glibc/libc6_2.41-12_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000008

Package: dpkg-ish
Version: 1
Architecture: amd64
Provides: dpkg-virtual (= 2)
Filename: pool/main/d/dpkg-ish/dpkg-ish_1_amd64.deb
Size: 10
SHA256: 0000000000000000000000000000000000000000000000000000000000000009

Package: needs-virtual
Version: 1
Architecture: amd64
Depends: dpkg-virtual (>= 2), notmultiarch:any
Filename: pool/main/n/nv/nv_1_amd64.deb
Size: 10
SHA256: 000000000000000000000000000000000000000000000000000000000000000a

Package: notmultiarch
Version: 1
Architecture: amd64
Filename: pool/main/n/nm/nm_1_amd64.deb
Size: 10
SHA256: 000000000000000000000000000000000000000000000000000000000000000b

Package: breaker
Version: 1
Architecture: all
Breaks: libc6 (<< 2.42)
Filename: pool/main/b/breaker/breaker_1_all.deb
Size: 10
SHA256: 000000000000000000000000000000000000000000000000000000000000000c

Package: wants-breaker
Version: 1
Architecture: all
Depends: breaker
Filename: pool/main/w/wb/wb_1_all.deb
Size: 10
SHA256: 000000000000000000000000000000000000000000000000000000000000000d

Package: i386only
Version: 1
Architecture: i386
Filename: pool/main/i/i386only/i_1_i386.deb
Size: 10
SHA256: 000000000000000000000000000000000000000000000000000000000000000e
`

func testIndex(t *testing.T) *Index {
	t.Helper()
	es, err := ParsePackages(strings.NewReader(testPackages), "test Packages", "main", "amd64")
	if err != nil {
		t.Fatal(err)
	}
	return NewIndex(Source{Suite: "test", Arch: "amd64"}, nil, es)
}

func names(res *Resolution) []string {
	var out []string
	for _, p := range res.Packages {
		out = append(out, p.Name+"="+p.Version)
	}
	return out
}

func TestResolveRules(t *testing.T) {
	ix := testIndex(t)
	if ix.Lookup("i386only") != nil {
		t.Error("a foreign-architecture entry was kept")
	}
	ctx := context.Background()

	// libfoo (>= 2): 1:1.5 (epoch 1) beats 1.9; mail-transport-agent goes
	// to the provider with the better Priority; py:any is M-A allowed.
	res, err := Resolve(ctx, ix, []Request{{Name: "app"}}, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"app=1.0-1", "dpkg-ish=1", "exim=4-1", "helper=1", "libc6=2.41-12", "libfoo=1:1.5-1", "py=3.13-1"}
	if got := names(res); !slices.Equal(got, want) {
		t.Errorf("resolved %v, want %v", got, want)
	}
	for _, p := range res.Packages {
		if p.Name == "libc6" && strings.Join(p.Chain, " → ") != "app → libc6" {
			t.Errorf("libc6 chain %v", p.Chain)
		}
	}

	// An alternative already selected wins over the first one.
	res, err = Resolve(ctx, ix, []Request{{Name: "postfix"}, {Name: "app"}}, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(res); slices.Contains(got, "exim=4-1") || !slices.Contains(got, "postfix=3-1") {
		t.Errorf("with postfix requested: %v", got)
	}

	// An exact version.
	res, err = Resolve(ctx, ix, []Request{{Name: "libfoo", Version: "1.9-1"}}, ResolveOptions{})
	if err != nil || res.Packages[0].Version != "1.9-1" {
		t.Errorf("libfoo=1.9-1: %v %v", err, res)
	}

	// A versioned virtual dependency needs a versioned Provides; :any
	// needs Multi-Arch: allowed.
	_, err = Resolve(ctx, ix, []Request{{Name: "needs-virtual"}}, ResolveOptions{})
	if err == nil || !strings.Contains(err.Error(), "needs-virtual → notmultiarch:any: notmultiarch is not Multi-Arch: allowed") {
		t.Errorf("notmultiarch:any: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "dpkg-virtual") {
		t.Errorf("dpkg-virtual (>= 2) should be satisfied by dpkg-ish's Provides (= 2): %v", err)
	}

	// Unknown names and unsatisfiable versions name the chain.
	_, err = Resolve(ctx, ix, []Request{{Name: "nosuch"}, {Name: "libfoo", Version: "3"}}, ResolveOptions{})
	var re *ResolveError
	if !errors.As(err, &re) || !errors.Is(err, errs.ErrDependency) ||
		!strings.Contains(err.Error(), "nosuch: no such package in test/main amd64") ||
		!strings.Contains(err.Error(), "libfoo=3: no version 3 in test/main amd64 (it has 1:1.5-1, 1.9-1)") {
		t.Errorf("unknown: %v", err)
	}

	// Breaks between selected packages, with both chains.
	_, err = Resolve(ctx, ix, []Request{{Name: "app"}, {Name: "wants-breaker"}}, ResolveOptions{})
	var ce *ConflictError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "breaker=1 breaks libc6=2.41-12 (libc6 (<< 2.42)); breaker=1 comes from wants-breaker → breaker, libc6=2.41-12 from app → libc6") {
		t.Errorf("breaks: %v", err)
	}
	// Conflicts through a virtual package; a package never conflicts
	// with its own Provides.
	_, err = Resolve(ctx, ix, []Request{{Name: "exim"}, {Name: "postfix"}}, ResolveOptions{})
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "exim=4-1 conflicts postfix=3-1 (mail-transport-agent)") {
		t.Errorf("conflicts: %v", err)
	}
	if _, err := Resolve(ctx, ix, []Request{{Name: "exim"}}, ResolveOptions{}); err != nil {
		t.Errorf("exim alone: %v", err)
	}

	// A virtual package with several providers must be named.
	if _, err := Resolve(ctx, ix, []Request{{Name: "mail-transport-agent"}}, ResolveOptions{}); err == nil || !strings.Contains(err.Error(), "provided by exim, postfix") {
		t.Errorf("virtual request: %v", err)
	}

	// Exclude treats a dependency as satisfied.
	res, err = Resolve(ctx, ix, []Request{{Name: "app"}}, ResolveOptions{Exclude: []string{"dpkg-ish"}})
	if err != nil || slices.Contains(names(res), "dpkg-ish=1") {
		t.Errorf("exclude: %v %v", err, res)
	}
}

func TestParseRequest(t *testing.T) {
	r, err := ParseRequest("nodejs=24.22.2+dfsg+~cs24.19.2-1")
	if err != nil || r.Name != "nodejs" || r.Version != "24.22.2+dfsg+~cs24.19.2-1" {
		t.Errorf("ParseRequest: %+v %v", r, err)
	}
	for _, bad := range []string{"", "=1", "a b", "nodejs=1 0"} {
		if _, err := ParseRequest(bad); err == nil {
			t.Errorf("ParseRequest(%q) accepted", bad)
		}
	}
}

func TestResolveNodejsSid(t *testing.T) {
	ix := openIndex(t, "sid")
	ctx := context.Background()
	reqs := []Request{{Name: "nodejs"}, {Name: "ca-certificates"}}
	start := time.Now()
	res, err := Resolve(ctx, ix, reqs, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resolved %d packages in %v", len(res.Packages), time.Since(start))
	got := names(res)
	if n := len(got); n < 30 || n > 45 {
		t.Errorf("%d packages, expected about 37: %v", n, got)
	}
	has := func(prefix string) bool {
		return slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, prefix) })
	}
	for _, p := range []string{"libc6=", "libnode", "nodejs=", "ca-certificates=", "openssl=", "libssl"} {
		if !has(p) {
			t.Errorf("no %s… in %v", p, got)
		}
	}
	for _, p := range []string{"dpkg=", "bash=", "coreutils="} {
		if has(p) {
			t.Errorf("%s… selected without the Essential option", p)
		}
	}
	// Deterministic: again, and with the requests the other way round.
	res2, err := Resolve(ctx, ix, []Request{{Name: "ca-certificates"}, {Name: "nodejs"}}, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names(res2), got) {
		t.Errorf("request order changed the result:\n%v\n%v", names(res2), got)
	}
	pins, err := ix.Pins(res)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for i, p := range pins {
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
		if i > 0 && pins[i-1].Path >= p.Path {
			t.Errorf("pins not sorted at %s", p.Path)
		}
		if !strings.HasPrefix(p.URL, DefaultMirror+"/pool/main/") || (p.Platform != "amd64" && p.Platform != "all") {
			t.Errorf("pin %+v", p)
		}
		total += p.Size
		if p.Name == "zlib1g" {
			if !strings.Contains(p.Path, "%3a") || p.Purl("deb") != "pkg:deb/debian/zlib1g@"+strings.ReplaceAll(p.Version, "+", "%2B")+"?arch=amd64" {
				t.Errorf("zlib1g pin %s purl %s", p.Path, p.Purl("deb"))
			}
		}
	}
	t.Logf("%d pins, %.1f MB", len(pins), float64(total)/1e6)

	rec := ix.Record()
	if rec.Codename != "sid" || !rec.AllowedExpired || rec.ValidUntil == nil || len(rec.Signer) != 40 || len(rec.Files) != 1 || rec.Files[0].Path != "main/binary-amd64/Packages.xz" || rec.InRelease != ix.Release.SHA256 {
		t.Errorf("record %+v", rec)
	}

	// With the Essential set the closure grows and includes dpkg, bash.
	res3, err := Resolve(ctx, ix, reqs, ResolveOptions{Essential: true})
	if err != nil {
		t.Fatal(err)
	}
	n3 := names(res3)
	if len(n3) <= len(got) || !slices.ContainsFunc(n3, func(s string) bool { return strings.HasPrefix(s, "dpkg=") }) {
		t.Errorf("with Essential: %d packages", len(n3))
	}
	t.Logf("with Essential: %d packages", len(n3))
}

func TestResolveRubyTrixie(t *testing.T) {
	ix := openIndex(t, "trixie")
	res, err := Resolve(context.Background(), ix, []Request{{Name: "ruby"}, {Name: "bundler"}}, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := names(res)
	t.Logf("ruby + bundler in trixie: %d packages: %v", len(got), got)
	for _, p := range []string{"ruby=", "bundler=", "ruby-bundler=", "libruby3.3=", "ruby3.3=", "ruby-rubygems=", "libc6="} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, p) }) {
			t.Errorf("no %s… in the closure", p)
		}
	}
}

func TestResolveErrorsOnRealData(t *testing.T) {
	ctx := context.Background()
	sid := openIndex(t, "sid")
	_, err := Resolve(ctx, sid, []Request{{Name: "nodejs"}, {Name: "no-such-package-vmbuild"}}, ResolveOptions{})
	if err == nil || !strings.Contains(err.Error(), "no-such-package-vmbuild: no such package in sid/main amd64") {
		t.Errorf("unknown package: %v", err)
	}
	// The same index without libicu: the chain leads to it.
	var es []*Entry
	var icu string
	for _, e := range sid.entries {
		if strings.HasPrefix(e.Name, "libicu") && !strings.Contains(e.Name, "-") {
			icu = e.Name
			continue
		}
		es = append(es, e)
	}
	trimmed := NewIndex(sid.Source, sid.Release, es)
	_, err = Resolve(ctx, trimmed, []Request{{Name: "nodejs"}}, ResolveOptions{})
	var re *ResolveError
	if !errors.As(err, &re) || len(re.Chain) < 3 || re.Chain[0] != "nodejs" || !strings.HasPrefix(re.Chain[len(re.Chain)-1], icu) {
		t.Errorf("missing %s: %v", icu, err)
	}
	t.Logf("without %s: %v", icu, err)

	// A real conflict: exim4 (whose daemon provides mail-transport-agent)
	// and postfix both conflict with mail-transport-agent.
	trixie := openIndex(t, "trixie")
	_, err = Resolve(ctx, trixie, []Request{{Name: "exim4"}, {Name: "postfix"}}, ResolveOptions{})
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("exim4 + postfix: %v", err)
	}
	msg := err.Error()
	for _, s := range []string{"postfix=", "conflicts exim4-daemon-light=", "exim4 → exim4-daemon-light", "from postfix"} {
		if !strings.Contains(msg, s) {
			t.Errorf("conflict error %q does not say %q", msg, s)
		}
	}
	t.Log(msg)
}

func BenchmarkOpenSid(b *testing.B) {
	requireArchive(b)
	for b.Loop() {
		if _, err := Open(context.Background(), Source{Suite: "sid", Arch: "amd64", AllowExpired: true}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenSidCached(b *testing.B) {
	requireArchive(b)
	dir := b.TempDir()
	src := Source{Suite: "sid", Arch: "amd64", AllowExpired: true}
	if _, err := Open(context.Background(), src, WithCacheDir(dir)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Open(context.Background(), src, WithCacheDir(dir)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResolveNodejs(b *testing.B) {
	ix := openIndex(b, "sid")
	for b.Loop() {
		// A fresh index each time would measure parsing; the providers
		// map is built once per index, so measure both: first and later.
		if _, err := Resolve(context.Background(), ix, []Request{{Name: "nodejs"}, {Name: "ca-certificates"}}, ResolveOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

var _ = fmt.Sprint
