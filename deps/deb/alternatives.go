package deb

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/vmbuild/vmbuild/errs"
)

// Alternative is one `update-alternatives --install` that a postinst
// would run: LINK → /etc/alternatives/NAME → PATH, with slaves.
type Alternative struct {
	Link, Name, Path string
	Priority         int
	Slaves           []AlternativeSlave
	// Package that declared it.
	Package string
}

// AlternativeSlave is a --slave LINK NAME PATH of an Alternative.
type AlternativeSlave struct{ Link, Name, Path string }

// ParseAlternatives finds the `update-alternatives --install` commands in
// a maintainer script (postinst). Only literal arguments are understood:
// a command using shell variables or substitutions is skipped and
// reported in skipped, for the caller to decide.
func ParseAlternatives(pkg, script string) (alts []Alternative, skipped []string) {
	script = strings.ReplaceAll(script, "\\\n", " ")
	for _, line := range strings.Split(script, "\n") {
		i := strings.Index(line, "update-alternatives")
		if i < 0 || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		cmd := line[i:]
		if j := strings.IndexAny(cmd, ";|&"); j >= 0 {
			cmd = cmd[:j]
		}
		f := strings.Fields(cmd)
		k := indexOf(f, "--install")
		if k < 0 {
			continue
		}
		if strings.ContainsAny(cmd, "$`") || len(f) < k+5 {
			skipped = append(skipped, strings.TrimSpace(cmd))
			continue
		}
		for n := range f {
			f[n] = strings.Trim(f[n], `"'`)
		}
		prio, err := strconv.Atoi(f[k+4])
		if err != nil {
			skipped = append(skipped, strings.TrimSpace(cmd))
			continue
		}
		a := Alternative{Link: f[k+1], Name: f[k+2], Path: f[k+3], Priority: prio, Package: pkg}
		rest := f[k+5:]
		for len(rest) >= 4 && rest[0] == "--slave" {
			a.Slaves = append(a.Slaves, AlternativeSlave{Link: rest[1], Name: rest[2], Path: rest[3]})
			rest = rest[4:]
		}
		alts = append(alts, a)
	}
	return alts, skipped
}

func indexOf(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return -1
}

// ApplyAlternatives makes the links update-alternatives would in auto
// mode: for each name, the alternative of highest priority whose path
// exists in root (ties: the smaller path) gets LINK → /etc/alternatives/
// NAME → PATH, and so does each of its slaves whose path exists. An
// existing symlink at LINK is replaced; anything else there is an error.
// It returns the alternatives chosen, by name.
func ApplyAlternatives(root string, alts []Alternative) ([]Alternative, error) {
	rt, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("applying alternatives: %w", err)
	}
	defer rt.Close()
	exists := func(p string) bool {
		_, err := rt.Lstat(strings.TrimPrefix(path.Clean(p), "/"))
		return err == nil
	}
	best := map[string]Alternative{}
	for _, a := range alts {
		if !exists(a.Path) {
			continue
		}
		b, ok := best[a.Name]
		if !ok || a.Priority > b.Priority || (a.Priority == b.Priority && a.Path < b.Path) {
			best[a.Name] = a
		}
	}
	var names []string
	for n := range best {
		names = append(names, n)
	}
	sort.Strings(names)
	link := func(link, name, target string) error {
		if !strings.HasPrefix(link, "/") || !strings.HasPrefix(target, "/") || strings.Contains(name, "/") {
			return fmt.Errorf("%w: alternative %s: link %q and path %q must be absolute", errs.ErrDependency, name, link, target)
		}
		if err := rt.MkdirAll("etc/alternatives", 0o755); err != nil {
			return err
		}
		for _, l := range [][2]string{{"etc/alternatives/" + name, target}, {strings.TrimPrefix(path.Clean(link), "/"), "/etc/alternatives/" + name}} {
			fi, err := rt.Lstat(l[0])
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				return err
			case fi.Mode()&fs.ModeSymlink == 0:
				return fmt.Errorf("%w: alternative %s: /%s exists and is not a symlink", fs.ErrExist, name, l[0])
			}
			if err := replaceSymlink(rt, l[1], l[0]); err != nil {
				return err
			}
		}
		return nil
	}
	var out []Alternative
	for _, n := range names {
		a := best[n]
		if err := link(a.Link, a.Name, a.Path); err != nil {
			return nil, fmt.Errorf("applying alternatives: %w", err)
		}
		for _, s := range a.Slaves {
			if exists(s.Path) {
				if err := link(s.Link, s.Name, s.Path); err != nil {
					return nil, fmt.Errorf("applying alternatives: %w", err)
				}
			}
		}
		out = append(out, a)
	}
	return out, nil
}
