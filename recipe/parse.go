package recipe

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/patternmatcher"
	"go.yaml.in/yaml/v3"

	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/redact"
	"github.com/vmbuild/vmbuild/internal/strictyaml"
)

// FieldError is one problem in a recipe, located by file, line and the
// dotted path of the field (e.g. build.layers[1].outputs[0]).
type FieldError = strictyaml.FieldError

// Error lists every problem found in a recipe, in file order; it matches
// errs.ErrInvalidRecipe.
type Error = strictyaml.Error

// Load reads, parses and validates the recipe at path, and reads the patch
// files it names (relative to the recipe's directory).
func Load(path string) (*Recipe, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading recipe: %w: %w", errs.ErrInvalidRecipe, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("reading recipe: %w", err)
	}
	return Parse(path, filepath.Dir(abs), raw, os.ReadFile)
}

// ReadFileFunc reads a file named by an absolute path.
type ReadFileFunc func(name string) ([]byte, error)

// Parse parses and validates recipe bytes. file names the recipe in errors;
// dir is the directory patch paths resolve against; readFile reads them
// (nil: patch contents are left empty and not checked).
func Parse(file, dir string, raw []byte, readFile ReadFileFunc) (*Recipe, error) {
	d := &decoder{Decoder: strictyaml.NewDecoder("recipe", file, errs.ErrInvalidRecipe, strictyaml.Options{}), file: file}
	top, err := d.Parse(raw)
	if err != nil {
		return nil, err
	}
	r := &Recipe{Path: file, Dir: dir, Raw: raw, SHA256: sha256hex(raw)}
	d.recipe(top, r)
	if !d.Failed() {
		d.validate(r, readFile)
	}
	if err := d.Result(); err != nil {
		return nil, err
	}
	return r, nil
}

type decoder struct {
	*strictyaml.Decoder
	file string
}

func resolve(n *yaml.Node) *yaml.Node { return strictyaml.Resolve(n) }

func (d *decoder) recipe(n *yaml.Node, r *Recipe) {
	var buildNode, imageNode *yaml.Node
	d.Mapping(n, "", strictyaml.Fields{
		"apiVersion": func(n *yaml.Node, f string) {
			r.APIVersion = d.Str(n, f)
			if r.APIVersion != "" && r.APIVersion != APIVersion {
				d.ErrAt(n, f, "unsupported apiVersion %q (this vmbuild reads %q)", r.APIVersion, APIVersion)
			}
		},
		"name": func(n *yaml.Node, f string) {
			r.Name = d.Str(n, f)
			if r.Name != "" && !nameRE.MatchString(r.Name) {
				d.ErrAt(n, f, "%q is not a valid name (lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters)", r.Name)
			}
		},
		"upstream": func(n *yaml.Node, f string) {
			d.Mapping(n, f, strictyaml.Fields{
				"git": func(n *yaml.Node, f string) {
					r.Upstream.Git = d.Str(n, f)
					if r.Upstream.Git != "" {
						if err := checkGitURL(r.Upstream.Git); err != nil {
							d.ErrAt(n, f, "%v", err)
						}
					}
				},
				"ref": func(n *yaml.Node, f string) {
					r.Upstream.Ref = d.Str(n, f)
					if r.Upstream.Ref != "" && !validRef(r.Upstream.Ref) {
						d.ErrAt(n, f, "%q is not a valid git ref", r.Upstream.Ref)
					}
				},
			}, "git", "ref")
		},
		"base": func(n *yaml.Node, f string) { d.base(n, f, r) },
		"platform": func(n *yaml.Node, f string) {
			r.Platform = d.Str(n, f)
			if r.Platform != "" && !platformRE.MatchString(r.Platform) {
				d.ErrAt(n, f, "%q is not a platform (os/arch[/variant], e.g. linux/amd64)", r.Platform)
			}
		},
		"patches": func(n *yaml.Node, f string) {
			d.List(n, f, func(i int, n *yaml.Node, f string) {
				r.Patches = append(r.Patches, d.patch(n, f))
			})
		},
		"build": func(n *yaml.Node, f string) {
			buildNode = n
			d.build(n, f, &r.Build)
		},
		"image": func(n *yaml.Node, f string) {
			imageNode = n
			d.image(n, f, &r.Image)
		},
	}, "apiVersion", "name", "upstream", "build")
	if r.Image.Workdir == "" {
		r.Image.Workdir = DefaultWorkdir
	}
	if buildNode != nil && r.Build.Dockerfile != nil && imageNode != nil {
		d.ErrAt(imageNode, "image", "image settings apply to native builds only; in dockerfile mode the Dockerfile sets them")
	}
	if df := r.Build.Dockerfile; df != nil && len(df.BaseFor) > 0 && r.BaseDebian == nil {
		why := "the recipe has no base"
		if r.Base != "" {
			why = "the base is an image, which the Dockerfile can name itself"
		}
		d.ErrLine(&FieldError{File: d.file, Line: df.BaseForLine, Field: "build.dockerfile.baseFor", Msg: "replaces images with the Debian base (base.debian), but " + why})
	} else if r.NeedsBase() && r.Base == "" && r.BaseDebian == nil && buildNode != nil {
		why := "native builds run their layers on it"
		if !r.Build.Native() {
			why = "script patches run in it"
		}
		d.ErrAt(n, "base", "missing required field (%s)", why)
	}
}

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	platformRE = regexp.MustCompile(`^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$`)
	envKeyRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	exposeRE   = regexp.MustCompile(`^[0-9]{1,5}(/(tcp|udp|sctp))?$`)
)

func (d *decoder) patch(n *yaml.Node, field string) Patch {
	p := Patch{Line: resolve(n).Line}
	var fileNode *yaml.Node
	d.Mapping(n, field, strictyaml.Fields{
		"file": func(n *yaml.Node, f string) {
			if p.File != "" {
				d.ErrAt(n, f, "give either file (a unified diff) or script, not both")
				return
			}
			p.File, p.Kind, fileNode = d.Str(n, f), PatchDiff, n
		},
		"script": func(n *yaml.Node, f string) {
			if p.File != "" {
				d.ErrAt(n, f, "give either file (a unified diff) or script, not both")
				return
			}
			p.File, p.Kind, fileNode = d.Str(n, f), PatchScript, n
		},
		"name":     func(n *yaml.Node, f string) { p.Name = d.Str(n, f) },
		"optional": func(n *yaml.Node, f string) { p.Optional = d.Bool(n, f) },
		"offset":   func(n *yaml.Node, f string) { p.Offset = d.Bool(n, f) },
		"fuzz": func(n *yaml.Node, f string) {
			p.Fuzz = d.Int(n, f)
			if p.Fuzz < 0 || p.Fuzz > 3 {
				d.ErrAt(n, f, "must be between 0 and 3")
			}
		},
	})
	if p.File == "" && fileNode == nil && resolve(n).Kind == yaml.MappingNode {
		d.ErrAt(n, field, "missing file (a unified diff) or script (a shell script)")
	}
	if p.File != "" {
		if err := checkRelPath(p.File); err != nil {
			d.ErrAt(fileNode, field, "%v", err)
		}
	}
	if p.Name == "" {
		p.Name = path.Base(filepath.ToSlash(p.File))
	}
	if p.Kind == PatchScript && (p.Offset || p.Fuzz != 0) {
		d.ErrAt(n, field, "offset and fuzz apply to diffs, not scripts")
	}
	return p
}

func (d *decoder) build(n *yaml.Node, field string, b *Build) {
	var haveDockerfile, haveLayers bool
	d.Mapping(n, field, strictyaml.Fields{
		"dockerfile": func(n *yaml.Node, f string) {
			haveDockerfile = true
			df := &Dockerfile{Path: "Dockerfile", Args: map[string]string{}}
			if resolve(n).Tag == "!!null" {
				b.Dockerfile = df
				return
			}
			d.Mapping(n, f, strictyaml.Fields{
				"path": func(n *yaml.Node, f string) {
					df.Path = d.Str(n, f)
					if err := checkRelPath(df.Path); err != nil {
						d.ErrAt(n, f, "%v", err)
					}
				},
				"target": func(n *yaml.Node, f string) { df.Target = d.Str(n, f) },
				"args": func(n *yaml.Node, f string) {
					df.Args = d.StrMap(n, f)
					if _, ok := df.Args["SOURCE_COMMIT"]; ok {
						d.ErrAt(n, f+".SOURCE_COMMIT", "is set from the lock's commit; remove it")
					}
					if _, ok := df.Args["SOURCE_DATE_EPOCH"]; ok {
						d.ErrAt(n, f+".SOURCE_DATE_EPOCH", "comes from the lock's commit time; use sourceDateEpochArg: true to pass it to the Dockerfile")
					}
				},
				"sourceDateEpochArg": func(n *yaml.Node, f string) { df.SourceDateEpochArg = d.Bool(n, f) },
				"baseFor":            func(n *yaml.Node, f string) { df.BaseFor, df.BaseForLine = d.baseFor(n, f), resolve(n).Line },
			})
			b.Dockerfile = df
		},
		"layers": func(n *yaml.Node, f string) {
			haveLayers = true
			d.List(n, f, func(i int, n *yaml.Node, f string) {
				b.Layers = append(b.Layers, d.layer(n, f))
			})
			if len(b.Layers) == 0 {
				d.ErrAt(n, f, "needs at least one layer")
			}
		},
	})
	switch {
	case haveDockerfile && haveLayers:
		d.ErrAt(n, field, "give exactly one of dockerfile or layers, not both")
	case !haveDockerfile && !haveLayers && resolve(n).Kind == yaml.MappingNode:
		d.ErrAt(n, field, "give exactly one of dockerfile or layers")
	}
}

// baseFor reads build.dockerfile.baseFor: image references, each named
// once (as the frontend names its contexts).
func (d *decoder) baseFor(n *yaml.Node, field string) []string {
	refs := d.StrList(n, field)
	if len(refs) == 0 && resolve(n).Kind == yaml.SequenceNode {
		d.ErrAt(n, field, "needs at least one image reference (leave baseFor out to pull the Dockerfile's images)")
	}
	seen := map[string]int{}
	for i, ref := range refs {
		c, f := resolve(n).Content[i], fmt.Sprintf("%s[%d]", field, i)
		switch {
		case strings.HasPrefix(ref, OCILayoutPrefix) || strings.Contains(ref, "://"):
			d.ErrAt(c, f, "%q: give the image reference as the Dockerfile writes it (e.g. node:24-trixie-slim)", ref)
			continue
		case strings.ContainsRune(ref, '$'):
			d.ErrAt(c, f, "%q: give the reference with its build args expanded, as the frontend sees it", ref)
			continue
		}
		if _, err := reference.ParseNormalizedNamed(ref); err != nil {
			d.ErrAt(c, f, "%q is not a valid image reference: %v", ref, err)
			continue
		}
		switch name := NamedContext(ref); {
		case name == "scratch" || name == "context":
			d.ErrAt(c, f, "%q is not an image the frontend lets a named context replace", ref)
		default:
			if prev, dup := seen[name]; dup {
				d.ErrAt(c, f, "%q names the same image as %s[%d]", ref, field, prev)
			}
			seen[name] = i
		}
	}
	return refs
}

func (d *decoder) layer(n *yaml.Node, field string) Layer {
	l := Layer{Network: NetworkNone, Env: map[string]string{}, Line: resolve(n).Line}
	d.Mapping(n, field, strictyaml.Fields{
		"name": func(n *yaml.Node, f string) {
			l.Name = d.Str(n, f)
			if l.Name != "" && !nameRE.MatchString(l.Name) {
				d.ErrAt(n, f, "%q is not a valid layer name (lower-case letters, digits, '.', '_', '-')", l.Name)
			}
		},
		"inputs": func(n *yaml.Node, f string) {
			l.Inputs = d.StrList(n, f)
			for i, in := range l.Inputs {
				if err := checkGlob(in); err != nil {
					d.ErrAt(resolve(n).Content[i], fmt.Sprintf("%s[%d]", f, i), "%v", err)
				}
			}
		},
		"run": func(n *yaml.Node, f string) {
			l.Run = d.Str(n, f)
			if strings.TrimSpace(l.Run) == "" && resolve(n).Tag == "!!str" {
				d.ErrAt(n, f, "must not be empty")
			}
		},
		"outputs": func(n *yaml.Node, f string) {
			l.Outputs = d.StrList(n, f)
			if len(l.Outputs) == 0 && resolve(n).Kind == yaml.SequenceNode {
				d.ErrAt(n, f, "needs at least one absolute path")
			}
			for i, o := range l.Outputs {
				if err := checkAbsPath(o); err != nil {
					d.ErrAt(resolve(n).Content[i], fmt.Sprintf("%s[%d]", f, i), "%v", err)
				}
			}
		},
		"needs": func(n *yaml.Node, f string) {
			l.Needs = d.StrList(n, f)
			if n = resolve(n); n.Kind == yaml.SequenceNode {
				for _, c := range n.Content {
					l.needsLines = append(l.needsLines, c.Line)
				}
			}
		},
		"network": func(n *yaml.Node, f string) {
			v := d.Str(n, f)
			switch Network(v) {
			case NetworkNone, NetworkHost:
				l.Network = Network(v)
			case "":
			default:
				d.ErrAt(n, f, "must be none or host, not %q", v)
			}
		},
		"env": func(n *yaml.Node, f string) {
			l.Env = d.StrMap(n, f)
			d.checkEnvKeys(n, f, l.Env)
		},
		"cache": func(n *yaml.Node, f string) {
			l.Cache = d.StrList(n, f)
			for i, c := range l.Cache {
				if err := checkAbsPath(c); err != nil {
					d.ErrAt(resolve(n).Content[i], fmt.Sprintf("%s[%d]", f, i), "%v", err)
				}
			}
		},
		"sourceDateEpoch": func(n *yaml.Node, f string) { l.SourceDateEpoch = d.Bool(n, f) },
		"deps":            func(n *yaml.Node, f string) { l.Deps = d.deps(n, f, &l) },
	}, "name", "run", "outputs")
	if l.Deps != nil && l.Network == NetworkHost {
		d.ErrAt(n, field+".network", "a layer with deps installs its pinned packages with no network; drop network: host")
	}
	return l
}

func (d *decoder) checkEnvKeys(n *yaml.Node, f string, env map[string]string) {
	for _, k := range SortedKeys(env) {
		if !envKeyRE.MatchString(k) {
			d.ErrAt(n, strictyaml.Join(f, k), "is not a valid environment variable name")
		}
	}
}

func (d *decoder) image(n *yaml.Node, field string, im *Image) {
	d.Mapping(n, field, strictyaml.Fields{
		"workdir": func(n *yaml.Node, f string) {
			im.Workdir = d.Str(n, f)
			if err := checkAbsPath(im.Workdir); err != nil {
				d.ErrAt(n, f, "%v", err)
			}
		},
		"user": func(n *yaml.Node, f string) { im.User = d.Stringish(n, f) },
		"env": func(n *yaml.Node, f string) {
			im.Env = d.StrMap(n, f)
			d.checkEnvKeys(n, f, im.Env)
		},
		"entrypoint": func(n *yaml.Node, f string) { im.Entrypoint = d.StrList(n, f) },
		"cmd":        func(n *yaml.Node, f string) { im.Cmd = d.StrList(n, f) },
		"expose": func(n *yaml.Node, f string) {
			d.List(n, f, func(i int, c *yaml.Node, f string) {
				v := d.Stringish(c, f)
				if v != "" && !exposeRE.MatchString(v) {
					d.ErrAt(c, f, "%q is not a port (e.g. 3000 or 3000/tcp)", v)
					return
				}
				im.Expose = append(im.Expose, v)
			})
		},
		"labels": func(n *yaml.Node, f string) { im.Labels = d.StrMap(n, f) },
		"include": func(n *yaml.Node, f string) {
			im.Include = d.StrList(n, f)
			for i, in := range im.Include {
				if err := checkGlob(in); err != nil {
					d.ErrAt(resolve(n).Content[i], fmt.Sprintf("%s[%d]", f, i), "%v", err)
				}
			}
			if len(im.Include) == 0 && resolve(n).Kind == yaml.SequenceNode {
				d.ErrAt(n, f, "needs at least one path or glob (leave include out for the whole tree)")
			}
		},
	})
}

// validate checks what needs the whole recipe: references between layers,
// unique names, patch files.
func (d *decoder) validate(r *Recipe, readFile ReadFileFunc) {
	names := map[string]int{}
	for i, l := range r.Build.Layers {
		f := fmt.Sprintf("build.layers[%d]", i)
		if prev, dup := names[l.Name]; dup {
			d.ErrLine(&FieldError{File: d.file, Line: l.Line, Field: f + ".name", Msg: fmt.Sprintf("duplicate layer name %q (also build.layers[%d])", l.Name, prev)})
		}
		names[l.Name] = i
	}
	for i, l := range r.Build.Layers {
		for j, need := range l.Needs {
			f := fmt.Sprintf("build.layers[%d].needs[%d]", i, j)
			line := l.Line
			if j < len(l.needsLines) {
				line = l.needsLines[j]
			}
			if _, ok := names[need]; !ok {
				d.ErrLine(&FieldError{File: d.file, Line: line, Field: f, Msg: fmt.Sprintf("no layer named %q", need)})
			} else if need == l.Name {
				d.ErrLine(&FieldError{File: d.file, Line: line, Field: f, Msg: "a layer cannot need itself"})
			}
		}
	}
	if cyc := findCycle(r); cyc != "" {
		d.ErrLine(&FieldError{File: d.file, Field: "build.layers", Msg: "layers need each other in a cycle: " + cyc})
	}
	pnames := map[string]int{}
	for i, p := range r.Patches {
		f := fmt.Sprintf("patches[%d]", i)
		if prev, dup := pnames[p.Name]; dup {
			d.ErrLine(&FieldError{File: d.file, Line: p.Line, Field: f, Msg: fmt.Sprintf("duplicate patch name %q (also patches[%d]); give one a name:", p.Name, prev)})
		}
		pnames[p.Name] = i
		if readFile == nil || p.File == "" {
			continue
		}
		content, err := readFile(filepath.Join(r.Dir, filepath.FromSlash(p.File)))
		if err != nil {
			msg := err.Error()
			if errors.Is(err, os.ErrNotExist) {
				msg = fmt.Sprintf("patch file %s does not exist (paths are relative to the recipe's directory %s)", p.File, r.Dir)
			}
			d.ErrLine(&FieldError{File: d.file, Line: p.Line, Field: f, Msg: msg})
			continue
		}
		r.Patches[i].Content = content
		r.Patches[i].SHA256 = sha256hex(content)
		if len(content) == 0 {
			d.ErrLine(&FieldError{File: d.file, Line: p.Line, Field: f, Msg: fmt.Sprintf("patch file %s is empty", p.File)})
		}
	}
}

func findCycle(r *Recipe) string {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var found string
	var visit func(name string) bool
	visit = func(name string) bool {
		color[name] = grey
		stack = append(stack, name)
		l, _ := r.LayerByName(name)
		if l != nil {
			for _, n := range l.Needs {
				if n == name {
					continue
				}
				switch color[n] {
				case grey:
					i := len(stack) - 1
					for i >= 0 && stack[i] != n {
						i--
					}
					found = strings.Join(append(append([]string{}, stack[i:]...), n), " → ")
					return true
				case white:
					if _, ok := r.LayerByName(n); ok && visit(n) {
						return true
					}
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[name] = black
		return false
	}
	for _, l := range r.Build.Layers {
		if color[l.Name] == white && visit(l.Name) {
			return found
		}
	}
	return ""
}

func checkRelPath(p string) error {
	switch {
	case p == "":
		return errors.New("must not be empty")
	case strings.ContainsRune(p, 0):
		return errors.New("must not contain NUL")
	case path.IsAbs(filepath.ToSlash(p)):
		return fmt.Errorf("%q must be a relative path", p)
	}
	for _, c := range strings.Split(filepath.ToSlash(p), "/") {
		if c == ".." {
			return fmt.Errorf("%q must not contain '..'", p)
		}
	}
	return nil
}

func checkAbsPath(p string) error {
	switch {
	case p == "":
		return errors.New("must not be empty")
	case !path.IsAbs(p):
		return fmt.Errorf("%q must be an absolute path", p)
	case path.Clean(p) == "/":
		return fmt.Errorf("%q: the root directory is not allowed here", p)
	case path.Clean(p) != strings.TrimSuffix(p, "/") && path.Clean(p) != p:
		return fmt.Errorf("%q is not a clean path (did you mean %q?)", p, path.Clean(p))
	}
	return nil
}

func checkGlob(g string) error {
	if err := checkRelPath(g); err != nil {
		return err
	}
	// The rules BuildKit matches include patterns by (fsutil uses
	// moby/patternmatcher): compile the pattern as it will.
	pm, err := patternmatcher.New([]string{g})
	if err == nil {
		_, err = pm.MatchesOrParentMatches("probe")
	}
	if err != nil {
		return fmt.Errorf("%q is not a valid pattern: %v", g, err)
	}
	if strings.HasPrefix(path.Clean(g), ".git/") || path.Clean(g) == ".git" {
		return fmt.Errorf("%q: the source tree has no .git directory", g)
	}
	return nil
}

var scpLikeRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:[^/].*|^[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:/.*`)

func checkGitURL(u string) error {
	if _, ok := localGitPath(u, "."); ok {
		return nil
	}
	if what := redact.Credentials(u); what != "" {
		return fmt.Errorf("the URL carries %s, and vmbuild records this URL in the lock, the provenance and the image; "+
			"write it without (%s) and give git the credentials instead: a credential helper for https (git config --global credential.helper store, or your platform's), an SSH key for ssh "+
			"(vmbuild build passes them to BuildKit as a session secret, never in the graph)", what, cleanForRecipe(u))
	}
	if i := strings.Index(u, "://"); i > 0 {
		switch u[:i] {
		case "https", "http", "ssh", "git":
			return nil
		default:
			return fmt.Errorf("unsupported git URL scheme %q (use https, http, ssh, git, or a local path such as ./upstream.git)", u[:i])
		}
	}
	if scpLikeRE.MatchString(u) {
		return nil
	}
	return fmt.Errorf("%q is neither a git URL (https://, ssh://, git://, user@host:path) nor a local path (absolute, or starting with ./ or ../)", u)
}

// cleanForRecipe is u without its credentials, for the error.
func cleanForRecipe(u string) string {
	if clean, err := redact.URL(u); err == nil {
		return clean
	}
	return redact.Text(u)
}

func validRef(r string) bool {
	if r == "" || strings.ContainsAny(r, " ~^:?*[\\\x00") || strings.Contains(r, "..") || strings.HasSuffix(r, ".lock") || strings.HasPrefix(r, "-") {
		return false
	}
	return true
}

// OCILayoutPrefix marks a base image read from a local OCI image layout
// directory: oci-layout://DIR[:TAG][@sha256:...].
const OCILayoutPrefix = "oci-layout://"

// CheckImageRef validates an image reference: a registry reference (tag
// and/or digest) or an oci-layout:// reference.
func CheckImageRef(ref string) error {
	if strings.HasPrefix(ref, OCILayoutPrefix) {
		_, _, _, err := ParseOCILayoutRef(ref, ".")
		return err
	}
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return fmt.Errorf("%q is not a valid image reference: %v", ref, err)
	}
	return nil
}

// ParseOCILayoutRef splits oci-layout://DIR[:TAG][@DIGEST]; a relative DIR
// resolves against base.
func ParseOCILayoutRef(ref, base string) (dir, tag, dgst string, err error) {
	s := strings.TrimPrefix(ref, OCILayoutPrefix)
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s, dgst = s[:i], s[i+1:]
		if !strings.HasPrefix(dgst, "sha256:") || len(dgst) != 71 {
			return "", "", "", fmt.Errorf("%q: digest must be sha256:<64 hex>", ref)
		}
	}
	if i := strings.LastIndex(s, ":"); i >= 0 && !strings.Contains(s[i:], "/") {
		s, tag = s[:i], s[i+1:]
	}
	if s == "" {
		return "", "", "", fmt.Errorf("%q: missing layout directory", ref)
	}
	if tag == "" && dgst == "" {
		tag = "latest"
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(base, s)
	}
	return filepath.Clean(s), tag, dgst, nil
}
