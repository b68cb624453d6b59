package llb

import (
	"encoding/json"
	"fmt"
	"path"
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
