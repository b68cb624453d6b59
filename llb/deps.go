package llb

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"

	bk "github.com/moby/buildkit/client/llb"
	digest "github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
)

// Mount points of dependency steps.
const (
	// DepsMount holds a layer's pinned packages (its mirror), read-only.
	DepsMount = "/vmbuild-deps"
	debIn     = "/vmbuild-deb"
	debOut    = "/vmbuild-unpacked"
	debRoot   = "/vmbuild-rootfs"
)

// fetch is the fixed-output source of one pinned download: BuildKit's
// HTTP source with the pin's checksum. The daemon verifies the download
// and the cache key follows the checksum, so a package is fetched once
// per builder, whichever recipe, commit or URL asks for it.
func fetch(kind string, p deps.Package) bk.State {
	return bk.HTTP(p.URL,
		bk.Checksum(digest.Digest(p.Digest())),
		bk.Filename(path.Base(p.Path)),
		bk.WithCustomName(fmt.Sprintf("[vmbuild] fetch %s %s", kind, p.ID())))
}

// mirror lays the pinned downloads out at their paths on scratch: the
// tree a step's package manager installs from.
func mirror(name string, pkgs []deps.Package) bk.State {
	if len(pkgs) == 0 {
		return bk.Scratch()
	}
	var fa *bk.FileAction
	for _, p := range pkgs {
		ci := &bk.CopyInfo{CreateDestPath: true, CreatedTime: &LayerTime}
		src := fetch(kindOf(p), p)
		if fa == nil {
			fa = bk.Copy(src, "/"+path.Base(p.Path), "/"+p.Path, ci)
		} else {
			fa = fa.Copy(src, "/"+path.Base(p.Path), "/"+p.Path, ci)
		}
	}
	return bk.Scratch().File(fa, bk.WithCustomName(name))
}

func kindOf(p deps.Package) string {
	switch {
	case strings.HasSuffix(p.Path, ".deb"):
		return "deb"
	case strings.HasSuffix(p.Path, ".gem"):
		return "gem"
	}
	return "npm"
}

// depsPackages are a layer set's downloads, the tool first.
func depsPackages(ld *lock.LayerDeps) []deps.Package {
	ps := make([]deps.Package, 0, len(ld.Packages)+1)
	if ld.Tool != nil {
		ps = append(ps, ld.Tool.Package)
	}
	for _, p := range ld.Packages {
		ps = append(ps, p.Package)
	}
	return ps
}

// depsRun wraps a layer's command in `vmbuild-helper deps-run`, which
// checks the lockfile against its pin, serves the mirror on loopback (or
// lays it out for the manager), and puts the pinned tool on PATH.
func depsRun(l recipe.Layer, ld *lock.LayerDeps, wd string) []string {
	args := []string{helperMount + "/" + HelperBinary, "deps-run",
		"--manager=" + ld.Manager,
		"--mirror=" + DepsMount,
		"--lockfile=" + path.Join(wd, ld.Lockfile),
		"--lockfile-sha256=" + ld.LockfileSHA256,
	}
	if ld.Tool != nil {
		args = append(args, "--tool="+DepsMount+"/"+ld.Tool.Path, "--tool-entry="+ld.Tool.Entry)
	}
	if d := l.Deps; d != nil && d.Manager == recipe.DepsBundler {
		// Bundler's groups are the install's scope, as pinned.
		if len(d.Without) > 0 {
			args = append(args, "--env=BUNDLE_WITHOUT="+strings.Join(d.Without, ":"))
		}
		if len(d.With) > 0 {
			args = append(args, "--env=BUNDLE_WITH="+strings.Join(d.With, ":"))
		}
	}
	return append(args, "--", "/bin/sh", "-ec", l.Run)
}

// debianBase assembles the base from the pinned .debs: each unpacked in
// its own step (cached by the .deb's checksum), merged, finished by the
// helper (merged-/usr links, alternatives, CA bundle, accounts, files),
// and copied into one layer whose files all carry LayerTime.
func (g *Graph) debianBase(helper bk.State) (bk.State, error) {
	pin, dl := g.Lock.Debian, g.Lock.DepsLock
	if dl == nil || dl.Base == nil || len(dl.Base.Packages) == 0 {
		return bk.State{}, fmt.Errorf("building graph: the lock pins a Debian base but no packages (run `vmbuild lock`)")
	}
	var unpacked []bk.State
	for _, p := range dl.Base.Packages {
		deb := fetch("deb", p)
		file := path.Base(p.Path)
		root := bk.Scratch().File(bk.Mkdir(helperMount, 0o755, bk.WithCreatedTime(LayerTime)), bk.WithCustomName("[vmbuild] empty root"))
		run := root.Run(
			bk.Args([]string{helperMount + "/" + HelperBinary, "deb-unpack",
				"--deb=" + debIn + "/" + file, "--sha256=" + p.SHA256, "--package=" + p.ID(), "--url=" + p.URL, "--out=" + debOut}),
			bk.Dir("/"),
			bk.Network(bk.NetModeNone),
			bk.ReadonlyRootFS(),
			bk.AddMount(helperMount, helper, bk.Readonly),
			bk.AddMount(debIn, deb, bk.Readonly),
			bk.WithCustomName(fmt.Sprintf("[vmbuild] base: unpack %s", p.ID())),
		)
		unpacked = append(unpacked, run.AddMount(debOut, bk.Scratch()))
	}
	merged := bk.Merge(unpacked, bk.WithCustomName(fmt.Sprintf("[vmbuild] base: %d Debian packages", len(unpacked))))
	db := g.Recipe.BaseDebian
	acc := accounts(db)
	accJSON, err := json.Marshal(acc)
	if err != nil {
		return bk.State{}, err
	}
	files := make([]fileArg, 0, len(db.Files))
	for _, f := range db.Files {
		files = append(files, fileArg{Path: f.Path, Content: f.Content, Symlink: f.Symlink, Mode: f.Mode})
	}
	filesJSON, err := json.Marshal(files)
	if err != nil {
		return bk.State{}, err
	}
	root := bk.Scratch().File(bk.Mkdir(helperMount, 0o755, bk.WithCreatedTime(LayerTime)), bk.WithCustomName("[vmbuild] empty root"))
	fin := root.Run(
		bk.Args([]string{helperMount + "/" + HelperBinary, "deb-finalize", "--root=" + debRoot, "--arch=" + pin.Architecture,
			"--accounts=" + string(accJSON), "--files=" + string(filesJSON)}),
		bk.Dir("/"),
		bk.Network(bk.NetModeNone),
		bk.ReadonlyRootFS(),
		bk.AddMount(helperMount, helper, bk.Readonly),
		bk.WithCustomName(fmt.Sprintf("[vmbuild] base: finish (merged /usr, alternatives, CA bundle, %d users)", len(db.Users))),
	)
	finished := fin.AddMount(debRoot, merged)
	return bk.Scratch().File(
		bk.Copy(finished, "/", "/", &bk.CopyInfo{CopyDirContentsOnly: true, CreatedTime: &LayerTime}),
		bk.WithCustomName(fmt.Sprintf("[vmbuild] base: %s %s, %d packages (one layer)", pin.Suite, pin.Architecture, len(unpacked)))), nil
}

// fileArg is deb-finalize's --files element (install.File).
type fileArg struct {
	Path    string `json:"path"`
	Content string `json:"content,omitempty"`
	Symlink string `json:"symlink,omitempty"`
	Mode    int    `json:"mode,omitempty"`
}

type accountsArg struct {
	Users  []userArg  `json:"Users,omitempty"`
	Groups []groupArg `json:"Groups,omitempty"`
}

type userArg struct {
	Name  string
	UID   int
	GID   int
	Home  string
	Shell string
}

type groupArg struct {
	Name    string
	GID     int
	Members []string `json:",omitempty"`
}

func accounts(db *recipe.DebianBase) accountsArg {
	var a accountsArg
	for _, gr := range db.Groups {
		a.Groups = append(a.Groups, groupArg{Name: gr.Name, GID: gr.GID, Members: gr.Members})
	}
	for _, u := range db.Users {
		a.Users = append(a.Users, userArg{Name: u.Name, UID: u.UID, GID: u.GID, Home: u.Home, Shell: u.Shell})
	}
	return a
}

// DefaultBundlePath is where a Bundler layer installs gems when its env
// sets no BUNDLE_PATH (as Docker's ruby images do).
const DefaultBundlePath = "/usr/local/bundle"

const gemMount = "/vmbuild-gem"

// bundlePath is the layer's BUNDLE_PATH.
func bundlePath(l recipe.Layer) string {
	if p := l.Env["BUNDLE_PATH"]; p != "" {
		return p
	}
	return DefaultBundlePath
}

// gemMirror is a Bundler layer's gem cache: the .gem files, and each git
// gem's tree at its pinned commit in Bundler's vendor/cache layout.
func gemMirror(l recipe.Layer, ld *lock.LayerDeps) bk.State {
	st := mirror(fmt.Sprintf("[vmbuild] layer %s: %d pinned gems", l.Name, len(ld.Packages)), depsPackages(ld))
	for _, gp := range ld.Git {
		src := bk.Git(gp.Remote, "", bk.GitRef(gp.Revision), bk.GitChecksum(gp.Revision),
			bk.WithCustomName(fmt.Sprintf("[vmbuild] fetch git gem %s@%s", gp.Name, shortHex(gp.Revision))))
		st = st.File(bk.Copy(src, "/", "/"+gp.Path+"/", &bk.CopyInfo{CopyDirContentsOnly: true, CreateDestPath: true, CreatedTime: &LayerTime}),
			bk.WithCustomName(fmt.Sprintf("[vmbuild] layer %s: git gem %s", l.Name, gp.Name)))
	}
	return st
}

// perGemInstalls installs each gem in a step of its own, bundix style: on
// the base with the installs of the gems it requires present, so a native
// extension compiles against them. Each result is the diff the install
// made: a one-gem bump re-runs that gem's step (and those of the gems
// that require it); every other gem is a cache hit.
func (g *Graph) perGemInstalls(l recipe.Layer, ld *lock.LayerDeps, env []string) []bk.State {
	byName := map[string]lock.PackagePin{}
	for _, p := range ld.Packages {
		byName[p.Name] = p
	}
	deps := map[string][]string{}
	for _, p := range ld.Packages {
		for _, r := range p.Requires {
			if _, ok := byName[r]; ok {
				deps[p.Name] = append(deps[p.Name], r)
			}
		}
	}
	steps := installSteps(ld, deps)
	stepOf := map[string]int{}
	for i, s := range steps {
		for _, n := range s {
			stepOf[n] = i
		}
	}
	installs := make([]bk.State, len(steps))
	bp := bundlePath(l)
	for i, s := range steps {
		// The installs of every gem these need, transitively.
		need := map[int]bool{}
		var walk func(n string)
		walk = func(n string) {
			for _, d := range deps[n] {
				if j := stepOf[d]; j != i && !need[j] {
					need[j] = true
					walk(d)
				}
			}
		}
		for _, n := range s {
			walk(n)
		}
		lowerParts := []bk.State{g.Base}
		for j := range steps {
			if need[j] {
				lowerParts = append(lowerParts, installs[j])
			}
		}
		lower := g.Base
		if len(lowerParts) > 1 {
			lower = bk.Merge(lowerParts, bk.WithCustomName(fmt.Sprintf("[vmbuild] layer %s: gems %s need", l.Name, strings.Join(s, ", "))))
		}
		// Only the base's ruby: a base of Debian packages may have no
		// coreutils, so no env for gem's "#!/usr/bin/env ruby" (-S runs it
		// with ruby whatever its first line).
		script := `D=$(ruby -e 'print File.join(ENV["BUNDLE_PATH"], "ruby", RbConfig::CONFIG["ruby_version"])')` + "\n" +
			`GEM_HOME="$D" GEM_PATH="$D" ruby -S gem install --local --ignore-dependencies --no-document --install-dir "$D"`
		opts := []bk.RunOption{
			bk.Dir("/"),
			bk.Network(bk.NetModeNone),
			bk.WithCustomName(fmt.Sprintf("[vmbuild] layer %s: gem install %s", l.Name, strings.Join(s, " "))),
		}
		for _, n := range s {
			p := byName[n]
			script += " " + gemMount + "/" + path.Base(p.Path)
			opts = append(opts, bk.AddMount(gemMount+"/"+path.Base(p.Path), fetch("gem", p.Package), bk.SourcePath("/"+path.Base(p.Path)), bk.Readonly))
		}
		opts = append(opts, bk.Args([]string{"/bin/sh", "-ec", script}))
		for _, e := range setEnv(env, "BUNDLE_PATH", bp) {
			k, v, _ := strings.Cut(e, "=")
			opts = append(opts, bk.AddEnv(k, v))
		}
		run := lower.Run(opts...)
		installs[i] = bk.Diff(lower, run.Root(), bk.WithCustomName(fmt.Sprintf("[vmbuild] layer %s: gem %s installed", l.Name, strings.Join(s, " "))))
	}
	return installs
}

// installSteps orders the gems so each comes after those it requires; the
// gems of a dependency cycle share a step (Tarjan's strongly connected
// components, which come out dependencies first). Deterministic: gems are
// visited by name.
func installSteps(ld *lock.LayerDeps, deps map[string][]string) [][]string {
	var names []string
	for _, p := range ld.Packages {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	index := map[string]int{}
	low := map[string]int{}
	on := map[string]bool{}
	var stack []string
	var out [][]string
	n := 0
	var visit func(v string)
	visit = func(v string) {
		index[v], low[v] = n, n
		n++
		stack = append(stack, v)
		on[v] = true
		ds := append([]string(nil), deps[v]...)
		sort.Strings(ds)
		for _, w := range ds {
			if _, seen := index[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if on[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] == index[v] {
			var comp []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				on[w] = false
				comp = append(comp, w)
				if w == v {
					break
				}
			}
			sort.Strings(comp)
			out = append(out, comp)
		}
	}
	for _, v := range names {
		if _, seen := index[v]; !seen {
			visit(v)
		}
	}
	return out
}
