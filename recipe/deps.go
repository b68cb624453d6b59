package recipe

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vmbuild/vmbuild/internal/redact"
	"github.com/vmbuild/vmbuild/internal/strictyaml"
)

// DepsManager names the package manager of a layer's dependency set.
type DepsManager string

const (
	DepsNPM     DepsManager = "npm"
	DepsYarn    DepsManager = "yarn"
	DepsBundler DepsManager = "bundler"
)

// DefaultLockfile is each manager's lockfile name.
func (m DepsManager) DefaultLockfile() string {
	switch m {
	case DepsNPM:
		return "package-lock.json"
	case DepsYarn:
		return "yarn.lock"
	case DepsBundler:
		return "Gemfile.lock"
	}
	return ""
}

// Deps is the dependency set a native layer installs, Nix-style: vmbuild
// lock pins every package (name, version, URL, sha256) from the lockfile,
// the build fetches each as its own content-addressed source, and the
// layer's run installs them with no network, from a mirror served inside
// the step.
type Deps struct {
	Manager DepsManager
	// Lockfile is relative to the source root. Default: the manager's
	// (package-lock.json, yarn.lock, Gemfile.lock).
	Lockfile string
	// Workspaces scope npm and Yarn: `npm ci --workspace W`, `yarn
	// workspaces focus W`. Empty: the whole project.
	Workspaces []string
	// Production leaves out devDependencies (npm --omit=dev, yarn focus
	// --production).
	Production bool
	// Without and With are Bundler's groups (BUNDLE_WITHOUT, BUNDLE_WITH).
	Without, With []string
	// Registry overrides where packages are fetched from (an npm registry
	// or a gem mirror). It must hold no credentials.
	Registry string
	// Tool pins the package manager itself ("yarn@4.18.0", "npm@10.9.0").
	// Default: package.json's packageManager field (npm, Yarn); Bundler
	// comes from the base.
	Tool string
	// PerGem installs each gem in a step of its own (Bundler only), so a
	// one-gem bump compiles one gem. Default true.
	PerGem bool
	Line   int
}

var (
	groupRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	toolRE  = regexp.MustCompile(`^(npm|yarn|pnpm)@[0-9][0-9A-Za-z.+-]*$`)
	// Debian package names (policy 5.6.1) with an optional =version.
	debPkgRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]+(=[0-9A-Za-z.+~:-]+)?$`)
	suiteRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)
	userRE   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
)

func (d *decoder) deps(n *yaml.Node, field string, l *Layer) *Deps {
	dp := &Deps{Line: resolve(n).Line, PerGem: true}
	var managerNode *yaml.Node
	perGemSet := false
	d.Mapping(n, field, strictyaml.Fields{
		"manager": func(n *yaml.Node, f string) {
			managerNode = n
			dp.Manager = DepsManager(d.Str(n, f))
			switch dp.Manager {
			case DepsNPM, DepsYarn, DepsBundler, "":
			default:
				d.ErrAt(n, f, "must be npm, yarn or bundler, not %q", dp.Manager)
			}
		},
		"lockfile": func(n *yaml.Node, f string) {
			dp.Lockfile = d.Str(n, f)
			if err := checkRelPath(dp.Lockfile); err != nil {
				d.ErrAt(n, f, "%v", err)
			}
		},
		"workspaces": func(n *yaml.Node, f string) { dp.Workspaces = d.StrList(n, f) },
		"production": func(n *yaml.Node, f string) { dp.Production = d.Bool(n, f) },
		"without":    func(n *yaml.Node, f string) { dp.Without = d.groups(n, f) },
		"with":       func(n *yaml.Node, f string) { dp.With = d.groups(n, f) },
		"registry": func(n *yaml.Node, f string) {
			dp.Registry = d.Str(n, f)
			if err := checkRegistryURL(dp.Registry); err != nil {
				d.ErrAt(n, f, "%v", err)
			}
		},
		"tool": func(n *yaml.Node, f string) {
			dp.Tool = d.Str(n, f)
			if dp.Tool != "" && !toolRE.MatchString(dp.Tool) {
				d.ErrAt(n, f, "%q is not a package manager pin such as yarn@4.18.0 or npm@10.9.0", dp.Tool)
			}
		},
		"perGem": func(n *yaml.Node, f string) { dp.PerGem = d.Bool(n, f); perGemSet = true },
	}, "manager")
	if dp.Lockfile == "" {
		dp.Lockfile = dp.Manager.DefaultLockfile()
	}
	js := dp.Manager == DepsNPM || dp.Manager == DepsYarn
	switch {
	case dp.Manager == "":
	case js && (len(dp.Without) > 0 || len(dp.With) > 0):
		d.ErrAt(managerNode, field, "without and with are Bundler's groups; %s scopes with workspaces and production", dp.Manager)
	case js && perGemSet:
		d.ErrAt(managerNode, field, "perGem applies to bundler only")
	case dp.Manager == DepsBundler && (len(dp.Workspaces) > 0 || dp.Production):
		d.ErrAt(managerNode, field, "workspaces and production are npm's and Yarn's; Bundler scopes with without and with groups")
	case dp.Manager == DepsBundler && dp.Tool != "":
		d.ErrAt(managerNode, field, "tool pins npm or Yarn; Bundler comes from the base")
	case dp.Tool != "" && !strings.HasPrefix(dp.Tool, string(dp.Manager)+"@"):
		d.ErrAt(managerNode, field, "tool %q is not %s", dp.Tool, dp.Manager)
	}
	return dp
}

func (d *decoder) groups(n *yaml.Node, f string) []string {
	gs := d.StrList(n, f)
	for i, g := range gs {
		if !groupRE.MatchString(g) {
			d.ErrAt(resolve(n).Content[i], fmt.Sprintf("%s[%d]", f, i), "%q is not a Bundler group name", g)
		}
	}
	return gs
}

// checkRegistryURL accepts an http(s) URL without credentials: it is
// recorded in the lock and the provenance.
func checkRegistryURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", redact.Text(s))
	}
	if what := redact.Credentials(s); what != "" {
		return fmt.Errorf("the URL carries %s; it is recorded in the lock and the provenance: configure credentials for the package manager's host instead", what)
	}
	return nil
}

// DebianBase is a base assembled from pinned Debian packages, apko /
// rules_distroless style: vmbuild lock verifies the suite's signed
// InRelease and pins the dependency closure of Packages, one .deb each by
// sha256; the build unpacks them (no maintainer scripts run) and adds what
// a working system needs: the merged-/usr links, /etc/passwd and
// /etc/group with the declared users, the CA bundle, the declared files.
type DebianBase struct {
	// Mirror is the archive root. Default https://deb.debian.org/debian;
	// a snapshot such as
	// https://snapshot.debian.org/archive/debian/20261101T000000Z works.
	Mirror string
	// Suite or codename: trixie, sid, bookworm, stable, …
	Suite string
	// Components. Default [main].
	Components []string
	// Packages to install with their Depends/Pre-Depends closure
	// ("name" or "name=version").
	Packages []string
	// Essential adds the suite's Essential: yes packages (and their
	// closure): a full Debian userland rather than only what Packages
	// need.
	Essential bool
	// Keyring verifies InRelease. Default
	// /usr/share/keyrings/debian-archive-keyring.gpg.
	Keyring string
	// AllowExpired accepts an InRelease past its Valid-Until (a snapshot
	// or frozen mirror). Off by default, as in apt: an expired index is
	// how a freeze attack looks. The lock records the choice.
	AllowExpired bool

	Users  []User
	Groups []Group
	Files  []File
	Line   int
}

// DefaultDebianMirror and DefaultDebianKeyring are DebianBase's defaults.
const (
	DefaultDebianMirror  = "https://deb.debian.org/debian"
	DefaultDebianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
)

// User is an account the base's /etc/passwd declares.
type User struct {
	Name  string
	UID   int
	GID   int // default: UID
	Home  string
	Shell string // default /usr/sbin/nologin
}

// Group is a group the base's /etc/group declares.
type Group struct {
	Name    string
	GID     int
	Members []string
}

// File is a file or symbolic link the base gets (/etc/timezone,
// /etc/localtime → /usr/share/zoneinfo/Etc/UTC, …).
type File struct {
	Path    string
	Content string
	Symlink string
	Mode    int // default 0644
}

func (d *decoder) base(n *yaml.Node, field string, r *Recipe) {
	if resolve(n).Kind == yaml.ScalarNode {
		r.Base = d.Str(n, field)
		if r.Base != "" {
			if err := CheckImageRef(r.Base); err != nil {
				d.ErrAt(n, field, "%v", err)
			}
		}
		return
	}
	db := &DebianBase{Line: resolve(n).Line}
	d.Mapping(n, field, strictyaml.Fields{
		"debian": func(n *yaml.Node, f string) {
			d.Mapping(n, f, strictyaml.Fields{
				"mirror": func(n *yaml.Node, f string) {
					db.Mirror = d.Str(n, f)
					if err := checkRegistryURL(db.Mirror); err != nil {
						d.ErrAt(n, f, "%v", err)
					}
				},
				"suite": func(n *yaml.Node, f string) {
					db.Suite = d.Str(n, f)
					if db.Suite != "" && !suiteRE.MatchString(db.Suite) {
						d.ErrAt(n, f, "%q is not a suite or codename (trixie, sid, stable, …)", db.Suite)
					}
				},
				"components": func(n *yaml.Node, f string) { db.Components = d.names(n, f, suiteRE, "a component") },
				"packages": func(n *yaml.Node, f string) {
					db.Packages = d.names(n, f, debPkgRE, "a Debian package name (name or name=version)")
					if len(db.Packages) == 0 && resolve(n).Kind == yaml.SequenceNode {
						d.ErrAt(n, f, "needs at least one package")
					}
				},
				"essential": func(n *yaml.Node, f string) { db.Essential = d.Bool(n, f) },
				"keyring": func(n *yaml.Node, f string) {
					db.Keyring = d.Str(n, f)
					if db.Keyring != "" && !path.IsAbs(db.Keyring) && !strings.HasPrefix(db.Keyring, "./") && !strings.HasPrefix(db.Keyring, "../") {
						d.ErrAt(n, f, "%q: give an absolute path, or one relative to the recipe (./keyring.gpg)", db.Keyring)
					}
				},
				"allowExpired": func(n *yaml.Node, f string) { db.AllowExpired = d.Bool(n, f) },
			}, "suite", "packages")
		},
		"users": func(n *yaml.Node, f string) {
			d.List(n, f, func(i int, n *yaml.Node, f string) { db.Users = append(db.Users, d.user(n, f)) })
		},
		"groups": func(n *yaml.Node, f string) {
			d.List(n, f, func(i int, n *yaml.Node, f string) { db.Groups = append(db.Groups, d.group(n, f)) })
		},
		"files": func(n *yaml.Node, f string) {
			d.List(n, f, func(i int, n *yaml.Node, f string) { db.Files = append(db.Files, d.baseFile(n, f)) })
		},
	}, "debian")
	if db.Mirror == "" {
		db.Mirror = DefaultDebianMirror
	}
	if len(db.Components) == 0 {
		db.Components = []string{"main"}
	}
	if db.Keyring == "" {
		db.Keyring = DefaultDebianKeyring
	}
	seen := map[string]bool{}
	for _, u := range db.Users {
		if seen["u:"+u.Name] {
			d.ErrAt(n, field+".users", "user %q is declared twice", u.Name)
		}
		seen["u:"+u.Name] = true
	}
	for _, g := range db.Groups {
		if seen["g:"+g.Name] {
			d.ErrAt(n, field+".groups", "group %q is declared twice", g.Name)
		}
		seen["g:"+g.Name] = true
	}
	r.BaseDebian = db
}

func (d *decoder) names(n *yaml.Node, f string, re *regexp.Regexp, what string) []string {
	vs := d.StrList(n, f)
	for i, v := range vs {
		if !re.MatchString(v) {
			d.ErrAt(resolve(n).Content[i], fmt.Sprintf("%s[%d]", f, i), "%q is not %s", v, what)
		}
	}
	return vs
}

func (d *decoder) user(n *yaml.Node, field string) User {
	u := User{GID: -1}
	d.Mapping(n, field, strictyaml.Fields{
		"name": func(n *yaml.Node, f string) { u.Name = d.checkedName(n, f) },
		"uid":  func(n *yaml.Node, f string) { u.UID = d.id(n, f) },
		"gid":  func(n *yaml.Node, f string) { u.GID = d.id(n, f) },
		"home": func(n *yaml.Node, f string) {
			u.Home = d.Str(n, f)
			if err := checkAbsPath(u.Home); err != nil {
				d.ErrAt(n, f, "%v", err)
			}
		},
		"shell": func(n *yaml.Node, f string) {
			u.Shell = d.Str(n, f)
			if err := checkAbsPath(u.Shell); err != nil {
				d.ErrAt(n, f, "%v", err)
			}
		},
	}, "name", "uid")
	if u.GID < 0 {
		u.GID = u.UID
	}
	if u.Home == "" {
		u.Home = "/nonexistent"
	}
	if u.Shell == "" {
		u.Shell = "/usr/sbin/nologin"
	}
	return u
}

func (d *decoder) group(n *yaml.Node, field string) Group {
	var g Group
	d.Mapping(n, field, strictyaml.Fields{
		"name":    func(n *yaml.Node, f string) { g.Name = d.checkedName(n, f) },
		"gid":     func(n *yaml.Node, f string) { g.GID = d.id(n, f) },
		"members": func(n *yaml.Node, f string) { g.Members = d.names(n, f, userRE, "a user name") },
	}, "name", "gid")
	return g
}

func (d *decoder) baseFile(n *yaml.Node, field string) File {
	fl := File{Mode: 0o644}
	d.Mapping(n, field, strictyaml.Fields{
		"path": func(n *yaml.Node, f string) {
			fl.Path = d.Str(n, f)
			if err := checkAbsPath(fl.Path); err != nil {
				d.ErrAt(n, f, "%v", err)
			}
		},
		"content": func(n *yaml.Node, f string) { fl.Content = d.Str(n, f) },
		"symlink": func(n *yaml.Node, f string) { fl.Symlink = d.Str(n, f) },
		"mode": func(n *yaml.Node, f string) {
			fl.Mode = d.Int(n, f)
			if fl.Mode < 0 || fl.Mode > 0o7777 {
				d.ErrAt(n, f, "must be a file mode such as 0644")
			}
		},
	}, "path")
	if fl.Symlink != "" && fl.Content != "" {
		d.ErrAt(n, field, "give content or symlink, not both")
	}
	return fl
}

func (d *decoder) checkedName(n *yaml.Node, f string) string {
	s := d.Str(n, f)
	if s != "" && !userRE.MatchString(s) {
		d.ErrAt(n, f, "%q is not a user or group name (lower-case letters, digits, '_', '-')", s)
	}
	return s
}

func (d *decoder) id(n *yaml.Node, f string) int {
	v := d.Int(n, f)
	if v < 0 || v > 65534 {
		d.ErrAt(n, f, "must be between 0 and 65534")
	}
	return v
}
