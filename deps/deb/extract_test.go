package deb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
)

// download fetches pins through deps.Fetcher (checked against their
// sha256, cached by it) and returns the files' paths.
func download(t *testing.T, pins []deps.Package) []string {
	t.Helper()
	f := &deps.Fetcher{CacheDir: testCacheDir}
	var reqs []deps.Request
	for _, p := range pins {
		want, err := deps.HexIntegrity("sha256", p.SHA256, "Packages SHA256")
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, deps.Request{ID: p.ID(), URL: p.URL, Want: want})
	}
	if _, err := f.Hash(context.Background(), reqs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pins {
		path := filepath.Join(testCacheDir, "sha256", p.SHA256)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s not in the fetcher's cache: %v", p.ID(), err)
		}
		out = append(out, path)
	}
	return out
}

func pinsFor(t *testing.T, ix *Index, names ...string) []deps.Package {
	t.Helper()
	var out []deps.Package
	for _, n := range names {
		es := ix.Lookup(n)
		if len(es) == 0 {
			t.Fatalf("no %s in %s", n, ix.Source)
		}
		out = append(out, Pin(ix.Source.Mirror, es[0]))
	}
	return out
}

func lstat(t *testing.T, p string) fs.FileInfo {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestExtractRealDebs(t *testing.T) {
	ix := openIndex(t, "sid")
	pins := pinsFor(t, ix, "base-files", "perl-base", "bzip2")
	files := download(t, pins)
	root := t.TempDir()
	contents := map[string]*Contents{}
	for i, p := range pins {
		c, err := ExtractFile(context.Background(), files[i], root, ExtractOptions{SHA256: p.SHA256, Package: p.ID(), URL: p.URL})
		if err != nil {
			t.Fatal(err)
		}
		if c.Package != p.Name || c.Version != p.Version || c.SHA256 != p.SHA256 || c.Size != p.Size {
			t.Errorf("%s: contents say %s %s %s %d", p.ID(), c.Package, c.Version, c.SHA256, c.Size)
		}
		contents[p.Name] = c
		t.Logf("%s: %d entries from %s, scripts %v, conffiles %v", p.ID(), len(c.Paths), c.DataFormat, c.ScriptNames(), c.Conffiles)
	}
	// base-files: modes of special directories, symlinks (merged /usr
	// ones included), a conffile and a postinst.
	if fi := lstat(t, filepath.Join(root, "tmp")); !fi.IsDir() || fi.Mode()&fs.ModePerm != 0o777 || fi.Mode()&fs.ModeSticky == 0 {
		t.Errorf("/tmp mode %v, want drwxrwxrwt", fi.Mode())
	}
	if fi := lstat(t, filepath.Join(root, "root")); fi.Mode().Perm() != 0o700 {
		t.Errorf("/root mode %v", fi.Mode())
	}
	for link, target := range map[string]string{"etc/os-release": "../usr/lib/os-release", "bin": "usr/bin", "lib64": "usr/lib64", "usr/bin/bunzip2": "bzip2"} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != target {
			t.Errorf("/%s → %q (%v), want %q", link, got, err, target)
		}
	}
	if c := contents["base-files"]; !slicesContains(c.Conffiles, "/etc/debian_version") || c.Scripts["postinst"] == "" {
		t.Errorf("base-files conffiles %v scripts %v", c.Conffiles, c.ScriptNames())
	}
	// perl-base: a hard link.
	a, b := lstat(t, filepath.Join(root, "usr/bin/perl")), lstat(t, filepath.Join(root, "usr/bin/perl"+strings.TrimSuffix(strings.SplitN(contents["perl-base"].Version, "-", 2)[0], "")))
	if !os.SameFile(a, b) {
		t.Errorf("usr/bin/perl and its versioned name are not one file")
	}
	// bzip2: an executable with the archive's mode and mtime.
	fi := lstat(t, filepath.Join(root, "usr/bin/bzip2"))
	if fi.Mode().Perm() != 0o755 || !fi.Mode().IsRegular() {
		t.Errorf("bzip2 mode %v", fi.Mode())
	}
	if time.Since(fi.ModTime()) < time.Hour {
		t.Errorf("bzip2 mtime %v is the extraction time, not the archive's", fi.ModTime())
	}
	if os.Geteuid() == 0 {
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 || st.Gid != 0 {
			t.Errorf("bzip2 owned by %d:%d", st.Uid, st.Gid)
		}
	}
	// The symlink's own mtime is the archive's too.
	if fi := lstat(t, filepath.Join(root, "usr/bin/bunzip2")); time.Since(fi.ModTime()) < time.Hour {
		t.Errorf("symlink mtime %v", fi.ModTime())
	}
	// Extracting again over the same tree (replacing files) works.
	if _, err := ExtractFile(context.Background(), files[2], root, ExtractOptions{}); err != nil {
		t.Errorf("extracting bzip2 again: %v", err)
	}
	// MergedUsr is a no-op where base-files made the links.
	if err := MergedUsr(root, "amd64"); err != nil {
		t.Errorf("MergedUsr over base-files: %v", err)
	}
}

func slicesContains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func TestExtractHashMismatch(t *testing.T) {
	ix := openIndex(t, "sid")
	pins := pinsFor(t, ix, "bzip2")
	files := download(t, pins)
	root := t.TempDir()
	wrong := strings.Repeat("0", 64)
	_, err := ExtractFile(context.Background(), files[0], root, ExtractOptions{SHA256: wrong, Package: pins[0].ID(), URL: pins[0].URL})
	var he *deps.HashError
	if !errors.As(err, &he) || !errors.Is(err, errs.ErrHashMismatch) || he.Expected != wrong || he.Actual != pins[0].SHA256 || he.Package != pins[0].ID() || he.URL != pins[0].URL {
		t.Fatalf("wrong sha256: %v", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("a .deb with the wrong hash wrote %d entries", len(ents))
	}
	// Streaming (not seekable): reported after reading.
	b, _ := os.ReadFile(files[0])
	_, err = Extract(context.Background(), bytes.NewReader(b[:len(b):len(b)]), t.TempDir(), ExtractOptions{SHA256: wrong})
	if !errors.As(err, &he) {
		t.Errorf("streamed: %v", err)
	}
}

// makeDeb builds a .deb in memory with the given data entries.
func makeDeb(t *testing.T, entries []*tar.Header, bodies map[string]string) []byte {
	return makeDebData(t, entries, bodies, "data.tar")
}

// makeDebData is makeDeb with the data member named (and compressed) as
// member says: data.tar, data.tar.gz, data.tar.xz, data.tar.zst.
func makeDebData(t *testing.T, entries []*tar.Header, bodies map[string]string, member string) []byte {
	t.Helper()
	tarOf := func(hs []*tar.Header, bodies map[string]string, gz bool) []byte {
		var buf bytes.Buffer
		var w *tar.Writer
		var zw *gzip.Writer
		if gz {
			zw = gzip.NewWriter(&buf)
			w = tar.NewWriter(zw)
		} else {
			w = tar.NewWriter(&buf)
		}
		for _, h := range hs {
			body := bodies[h.Name]
			if h.Typeflag == tar.TypeReg {
				h.Size = int64(len(body))
			}
			if h.ModTime.IsZero() {
				h.ModTime = time.Unix(1700000000, 0)
			}
			if err := w.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			w.Write([]byte(body))
		}
		w.Close()
		if zw != nil {
			zw.Close()
		}
		return buf.Bytes()
	}
	control := tarOf([]*tar.Header{{Name: "./control", Typeflag: tar.TypeReg, Mode: 0o644}, {Name: "./postinst", Typeflag: tar.TypeReg, Mode: 0o755}},
		map[string]string{"./control": "Package: t\nVersion: 1\nArchitecture: all\n", "./postinst": "#!/bin/sh\n"}, true)
	data := tarOf(entries, bodies, false)
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	addMember := func(name string, b []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(b))
		ar.Write(b)
		if len(b)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	addMember("debian-binary", []byte("2.0\n"))
	addMember("control.tar.gz", control)
	var z bytes.Buffer
	switch member {
	case "data.tar":
		z.Write(data)
	case "data.tar.gz":
		w := gzip.NewWriter(&z)
		w.Write(data)
		w.Close()
	case "data.tar.xz":
		w, err := xz.NewWriter(&z)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case "data.tar.zst":
		w, err := zstd.NewWriter(&z)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	default:
		t.Fatalf("no writer for %s", member)
	}
	addMember(member, z.Bytes())
	return ar.Bytes()
}

func TestExtractConfined(t *testing.T) {
	outside := t.TempDir()
	cases := []struct {
		name    string
		entries []*tar.Header
		want    string
	}{
		{"dotdot", []*tar.Header{{Name: "./../escape", Typeflag: tar.TypeReg, Mode: 0o644}}, "leaves the root"},
		{"through an absolute symlink", []*tar.Header{
			{Name: "./etc", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "./etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}}, "/etc/passwd"},
		{"through a relative symlink out", []*tar.Header{
			{Name: "./up", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../" + outside},
			{Name: "./up/x", Typeflag: tar.TypeReg, Mode: 0o644}}, "/up/x"},
		{"hard link out", []*tar.Header{{Name: "./h", Typeflag: tar.TypeLink, Linkname: "../../../etc/passwd"}}, "hard link"},
		{"device", []*tar.Header{{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}}, "device node"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			deb := makeDeb(t, c.entries, map[string]string{})
			_, err := Extract(context.Background(), bytes.NewReader(deb), t.TempDir(), ExtractOptions{Package: "t"})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error mentioning %q", err, c.want)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("wrote outside the root: %v", ents)
			}
		})
	}
	// A well-formed synthetic package: a symlink to an absolute target is
	// kept as written; setuid bits and FIFOs survive.
	root := t.TempDir()
	deb := makeDeb(t, []*tar.Header{
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/bin/su", Typeflag: tar.TypeReg, Mode: 0o4755},
		{Name: "./usr/bin/abs", Typeflag: tar.TypeSymlink, Linkname: "/etc/alternatives/abs"},
		{Name: "./usr/bin/fifo", Typeflag: tar.TypeFifo, Mode: 0o600},
		{Name: "./ro/", Typeflag: tar.TypeDir, Mode: 0o555},
		{Name: "./ro/file", Typeflag: tar.TypeReg, Mode: 0o444},
	}, map[string]string{"./usr/bin/su": "#!/bin/true\n", "./ro/file": "x"})
	c, err := Extract(context.Background(), bytes.NewReader(deb), root, ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Package != "t" || c.ScriptNames()[0] != "postinst" || c.DataFormat != "data.tar" {
		t.Errorf("contents %+v", c)
	}
	if fi := lstat(t, filepath.Join(root, "usr/bin/su")); fi.Mode()&fs.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("su mode %v", fi.Mode())
	}
	if l, _ := os.Readlink(filepath.Join(root, "usr/bin/abs")); l != "/etc/alternatives/abs" {
		t.Errorf("abs → %q", l)
	}
	if fi := lstat(t, filepath.Join(root, "usr/bin/fifo")); fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("fifo mode %v", fi.Mode())
	}
	if fi := lstat(t, filepath.Join(root, "ro")); fi.Mode().Perm() != 0o555 || fi.ModTime().Unix() != 1700000000 {
		t.Errorf("ro dir mode %v mtime %v", fi.Mode(), fi.ModTime())
	}
}

// TestNodejsBaseRuns is the whole path: resolve nodejs + ca-certificates
// in sid, download the 37 .debs (≈39 MB), extract them into one root, add
// the merged-/usr links, the CA bundle and the accounts, and run node and
// openssl from the root with chroot.
func TestNodejsBaseRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads 39 MB of .debs")
	}
	ix := openIndex(t, "sid")
	if os.Geteuid() != 0 {
		if os.Getenv("VMBUILD_INTEGRATION") == "1" {
			t.Fatal("running node in a chroot needs root")
		}
		t.Skip("running node in a chroot needs root")
	}
	res, err := Resolve(context.Background(), ix, []Request{{Name: "nodejs"}, {Name: "ca-certificates"}}, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pins, err := ix.Pins(res)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	files := download(t, pins)
	t.Logf("downloaded (or found cached) %d .debs in %v", len(files), time.Since(start))
	root := t.TempDir()
	start = time.Now()
	scripts := map[string][]string{}
	var alts []Alternative
	for i, p := range pins {
		c, err := ExtractFile(context.Background(), files[i], root, ExtractOptions{SHA256: p.SHA256, Package: p.ID(), URL: p.URL})
		if err != nil {
			t.Fatal(err)
		}
		alts = append(alts, c.Alternatives...)
		if len(c.AlternativesSkipped) > 0 {
			t.Errorf("%s: alternatives not understood: %v", p.Name, c.AlternativesSkipped)
		}
		for _, s := range c.ScriptNames() {
			scripts[s] = append(scripts[s], p.Name)
		}
	}
	t.Logf("extracted in %v", time.Since(start))
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm", "config"} {
		sort.Strings(scripts[s])
		t.Logf("packages with a %s (not run): %v", s, scripts[s])
	}
	if err := MergedUsr(root, "amd64"); err != nil {
		t.Fatal(err)
	}
	chosen, err := ApplyAlternatives(root, alts)
	if err != nil {
		t.Fatal(err)
	}
	if len(chosen) != 1 || chosen[0].Name != "js" {
		t.Errorf("alternatives chosen: %+v", chosen)
	}
	ca, err := UpdateCACertificates(root)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.WroteConf || len(ca.Certificates) < 100 {
		t.Errorf("CA bundle: %d certificates, wrote conf %v", len(ca.Certificates), ca.WroteConf)
	}
	if err := WriteAccounts(root, Accounts{Users: []User{{Name: "node", UID: 1000, GID: 1000, Home: "/home/node"}}, Groups: []Group{{Name: "node", GID: 1000}}}); err != nil {
		t.Fatal(err)
	}
	// The container runtime provides /dev; the chroot gets a /dev/null.
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "dev/null"), 0o666)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("chroot", append([]string{"--userspec=1000:1000", root}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/home/node"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if v := run("/usr/bin/node", "--version"); !strings.HasPrefix(v, "v24.") {
		t.Errorf("node --version = %q, want v24.x", v)
	} else {
		t.Logf("node --version: %s", v)
	}
	if v := run("/usr/bin/js", "--version"); !strings.HasPrefix(v, "v24.") {
		t.Errorf("js (the alternative) --version = %q", v)
	}
	if out := run("/usr/bin/node", "-e", "const c=require('crypto');console.log(process.versions.openssl, c.createHash('sha256').update('x').digest('hex').slice(0,8), require('os').userInfo().username, require('os').homedir())"); !strings.HasSuffix(out, " node /home/node") {
		t.Errorf("node as the declared user: %q", out)
	} else {
		t.Logf("node: %s", out)
	}
	// The bundle and the hash links both verify a root with OpenSSL.
	cert := "/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt"
	if out := run("/usr/bin/openssl", "verify", "-CAfile", "/etc/ssl/certs/ca-certificates.crt", cert); !strings.HasSuffix(out, ": OK") {
		t.Errorf("verify with the bundle: %s", out)
	}
	if out := run("/usr/bin/openssl", "verify", "-CApath", "/etc/ssl/certs", cert); !strings.HasSuffix(out, ": OK") {
		t.Errorf("verify with the hash links: %s", out)
	}
	if out := run("/usr/bin/node", "--use-openssl-ca", "-e", "console.log(require('tls').getCACertificates ? require('tls').getCACertificates('system').length : 'n/a')"); out == "0" {
		t.Errorf("node sees no system CA certificates")
	}
}

func TestParseAlternatives(t *testing.T) {
	script := `#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
    update-alternatives --install /usr/bin/js js /usr/bin/nodejs 200 \
                        --slave /usr/share/man/man1/js.1.gz js.1.gz /usr/share/man/man1/nodejs.1.gz
    update-alternatives --install /usr/bin/x x "$DIR/x" 10
fi
`
	alts, skipped := ParseAlternatives("nodejs", script)
	if len(alts) != 1 || alts[0].Link != "/usr/bin/js" || alts[0].Priority != 200 || len(alts[0].Slaves) != 1 || alts[0].Slaves[0].Name != "js.1.gz" {
		t.Errorf("alternatives %+v", alts)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "$DIR") {
		t.Errorf("skipped %v", skipped)
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/nodejs"), nil, 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/other"), nil, 0o755)
	alts = append(alts, Alternative{Link: "/usr/bin/js", Name: "js", Path: "/usr/bin/other", Priority: 100}, Alternative{Link: "/usr/bin/js", Name: "js", Path: "/usr/bin/missing", Priority: 900})
	chosen, err := ApplyAlternatives(root, alts)
	if err != nil || len(chosen) != 1 || chosen[0].Path != "/usr/bin/nodejs" {
		t.Fatalf("chosen %+v, %v", chosen, err)
	}
	if l, _ := os.Readlink(filepath.Join(root, "usr/bin/js")); l != "/etc/alternatives/js" {
		t.Errorf("/usr/bin/js → %q", l)
	}
	if l, _ := os.Readlink(filepath.Join(root, "etc/alternatives/js")); l != "/usr/bin/nodejs" {
		t.Errorf("/etc/alternatives/js → %q", l)
	}
	if _, err := os.Lstat(filepath.Join(root, "usr/share/man/man1/js.1.gz")); err == nil {
		t.Errorf("a slave whose path is missing was linked")
	}
}

// TestRubyBaseRuns does for trixie's ruby + bundler what
// TestNodejsBaseRuns does for node: resolve, download, extract, add the
// effects, and run ruby (with OpenSSL and a TLS store) and bundle.
func TestRubyBaseRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads the ruby closure")
	}
	ix := openIndex(t, "trixie")
	if os.Geteuid() != 0 {
		if os.Getenv("VMBUILD_INTEGRATION") == "1" {
			t.Fatal("running ruby in a chroot needs root")
		}
		t.Skip("running ruby in a chroot needs root")
	}
	res, err := Resolve(context.Background(), ix, []Request{{Name: "ruby"}, {Name: "bundler"}}, ResolveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pins, err := ix.Pins(res)
	if err != nil {
		t.Fatal(err)
	}
	files := download(t, pins)
	root := t.TempDir()
	var alts []Alternative
	var total int64
	for i, p := range pins {
		c, err := ExtractFile(context.Background(), files[i], root, ExtractOptions{SHA256: p.SHA256, Package: p.ID(), URL: p.URL})
		if err != nil {
			t.Fatal(err)
		}
		total += p.Size
		alts = append(alts, c.Alternatives...)
		if len(c.AlternativesSkipped) > 0 {
			t.Logf("%s: alternatives not understood: %v", p.Name, c.AlternativesSkipped)
		}
		if len(c.Scripts) > 0 {
			t.Logf("%s has %v", p.Name, c.ScriptNames())
		}
	}
	t.Logf("%d packages, %.1f MB", len(pins), float64(total)/1e6)
	if err := MergedUsr(root, "amd64"); err != nil {
		t.Fatal(err)
	}
	chosen, err := ApplyAlternatives(root, alts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("alternatives: %+v", chosen)
	if _, err := UpdateCACertificates(root); err != nil {
		t.Fatal(err)
	}
	if err := WriteAccounts(root, Accounts{Users: []User{{Name: "app", UID: 991, GID: 991, Home: "/home/app"}}, Groups: []Group{{Name: "app", GID: 991}}}); err != nil {
		t.Fatal(err)
	}
	// The container runtime provides /dev; the chroot gets a /dev/null.
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "dev/null"), 0o666)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("chroot", append([]string{"--userspec=991:991", root}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/home/app", "LANG=C.UTF-8"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if v := run("/usr/bin/ruby", "-ropenssl", "-retc", "-e", `s = OpenSSL::X509::Store.new; s.set_default_paths; c = OpenSSL::X509::Certificate.new(File.read("/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt")); puts RUBY_VERSION, OpenSSL::OPENSSL_LIBRARY_VERSION, s.verify(c), Etc.getpwuid.name`); !strings.HasPrefix(v, "3.") || !strings.Contains(v, "true\napp") {
		t.Errorf("ruby: %q", v)
	} else {
		t.Logf("ruby: %q", v)
	}
	if v := run("/usr/bin/bundle", "--version"); !strings.HasPrefix(v, "Bundler version 2.") {
		t.Errorf("bundle --version = %q", v)
	} else {
		t.Logf("%s", v)
	}
}

func TestExtractCompressions(t *testing.T) {
	for _, m := range []string{"data.tar", "data.tar.gz", "data.tar.xz", "data.tar.zst"} {
		t.Run(m, func(t *testing.T) {
			root := t.TempDir()
			deb := makeDebData(t, []*tar.Header{
				{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755},
				{Name: "./usr/share/", Typeflag: tar.TypeDir, Mode: 0o755},
				{Name: "./usr/share/f", Typeflag: tar.TypeReg, Mode: 0o644},
			}, map[string]string{"./usr/share/f": "hello"}, m)
			c, err := Extract(context.Background(), bytes.NewReader(deb), root, ExtractOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(root, "usr/share/f")); string(b) != "hello" || c.DataFormat != m {
				t.Errorf("got %q from %s", b, c.DataFormat)
			}
		})
	}
	// A directory entry over a symlink keeps the symlink, even an
	// absolute one, without following it.
	root := t.TempDir()
	os.Symlink("/etc/ssl/certs", filepath.Join(root, "certs"))
	deb := makeDeb(t, []*tar.Header{{Name: "./certs/", Typeflag: tar.TypeDir, Mode: 0o755}}, nil)
	if _, err := Extract(context.Background(), bytes.NewReader(deb), root, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	if l, _ := os.Readlink(filepath.Join(root, "certs")); l != "/etc/ssl/certs" {
		t.Errorf("certs → %q", l)
	}
}
