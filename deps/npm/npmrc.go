package npm

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/vmbuild/vmbuild/errs"
)

// Npmrc is what vmbuild reads from a project's .npmrc: the registry, the
// scope registries, and where credentials are configured (never their
// values).
type Npmrc struct {
	// File is the .npmrc's path in the tree; empty when there is none.
	File string
	// Registry is "registry=" (normalized, no trailing slash), or "".
	Registry string
	// Scopes maps "@scope" to "@scope:registry=".
	Scopes map[string]string
	// Credentials lists "FILE:LINE: KEY" for each credential setting
	// (_authToken, _auth, _password, certfile, keyfile).
	Credentials []string
}

var credentialKeys = []string{"_authToken", "_auth", "_password", "password", "certfile", "keyfile"}

// ReadNpmrc reads DIR/.npmrc from the tree, if present. A registry setting
// that names an environment variable (${VAR}) is an error: a lock must not
// depend on the environment; pass Options.Registry instead.
func ReadNpmrc(fsys fs.FS, dir string) (*Npmrc, error) {
	name := path.Join(dir, ".npmrc")
	b, err := fs.ReadFile(fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		return &Npmrc{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return ParseNpmrc(name, b)
}

// ParseNpmrc parses .npmrc text (npm's ini format: key=value lines, # and ;
// comments) named file in messages.
func ParseNpmrc(file string, b []byte) (*Npmrc, error) {
	rc := &Npmrc{File: file, Scopes: map[string]string{}}
	for i, line := range strings.Split(string(b), "\n") {
		ln := i + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), unquote(strings.TrimSpace(v))
		last := k
		if i := strings.LastIndex(k, ":"); i >= 0 {
			last = k[i+1:]
		}
		for _, c := range credentialKeys {
			if last == c {
				rc.Credentials = append(rc.Credentials, fmt.Sprintf("%s:%d: %s", file, ln, k))
			}
		}
		isScope := strings.HasPrefix(k, "@") && strings.HasSuffix(k, ":registry")
		if k != "registry" && !isScope {
			continue
		}
		if strings.Contains(v, "${") {
			return nil, fmt.Errorf("reading %s:%d: %w: %s takes the environment variable in %q; vmbuild resolves without the environment: set the registry in the recipe", file, ln, errs.ErrDependency, k, v)
		}
		reg, err := NormalizeRegistry(v)
		if err != nil {
			return nil, fmt.Errorf("reading %s:%d: %w: %s: %v", file, ln, errs.ErrDependency, k, err)
		}
		if isScope {
			rc.Scopes[strings.TrimSuffix(k, ":registry")] = reg
		} else {
			rc.Registry = reg
		}
	}
	return rc, nil
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}
