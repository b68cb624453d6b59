package yarn

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vmbuild/vmbuild/deps/npm"
	"github.com/vmbuild/vmbuild/errs"
)

// yarnrc is what vmbuild reads from a Berry project's .yarnrc.yml.
type yarnrc struct {
	file        string
	registry    string            // npmRegistryServer, normalized
	scopes      map[string]string // "@scope" → npmScopes.scope.npmRegistryServer
	supported   map[string][]string
	credentials []string
}

var yarnCredentialKeys = map[string]bool{"npmAuthToken": true, "npmAuthIdent": true, "npmPassword": true}

type yarnrcFile struct {
	NpmRegistryServer string `yaml:"npmRegistryServer"`
	NpmScopes         map[string]struct {
		NpmRegistryServer string `yaml:"npmRegistryServer"`
	} `yaml:"npmScopes"`
	SupportedArchitectures map[string][]string `yaml:"supportedArchitectures"`
}

func readYarnrc(fsys fs.FS, dir string) (*yarnrc, error) {
	name := path.Join(dir, ".yarnrc.yml")
	rc := &yarnrc{file: name, scopes: map[string]string{}}
	b, err := fs.ReadFile(fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		rc.file = ""
		return rc, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parsing %s: %w: %v", name, errs.ErrDependency, err)
	}
	var f yarnrcFile
	if err := doc.Decode(&f); err != nil {
		return nil, fmt.Errorf("parsing %s: %w: %v", name, errs.ErrDependency, err)
	}
	findCredentials(&doc, name, "", &rc.credentials)
	check := func(field, v string) (string, error) {
		if strings.Contains(v, "${") {
			return "", fmt.Errorf("reading %s: %w: %s takes an environment variable (%q); vmbuild resolves without the environment: set the registry in the recipe", name, errs.ErrDependency, field, v)
		}
		r, err := npm.NormalizeRegistry(v)
		if err != nil {
			return "", fmt.Errorf("reading %s: %w: %s: %v", name, errs.ErrDependency, field, err)
		}
		return r, nil
	}
	if f.NpmRegistryServer != "" {
		if rc.registry, err = check("npmRegistryServer", f.NpmRegistryServer); err != nil {
			return nil, err
		}
	}
	for scope, s := range f.NpmScopes {
		if s.NpmRegistryServer == "" {
			continue
		}
		r, err := check("npmScopes."+scope+".npmRegistryServer", s.NpmRegistryServer)
		if err != nil {
			return nil, err
		}
		rc.scopes["@"+strings.TrimPrefix(scope, "@")] = r
	}
	rc.supported = f.SupportedArchitectures
	return rc, nil
}

// findCredentials records "FILE:LINE: key.path" for credential settings.
func findCredentials(n *yaml.Node, file, prefix string, out *[]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			findCredentials(c, file, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			if yarnCredentialKeys[k.Value] {
				*out = append(*out, fmt.Sprintf("%s:%d: %s", file, k.Line, p))
			}
			findCredentials(v, file, p, out)
		}
	}
}

// archsFor is the architecture set Yarn installs for: the target, or
// supportedArchitectures with "current" meaning the target.
func archsFor(t npm.Target, supported map[string][]string) archs {
	cur := map[string]string{"os": t.OS, "cpu": t.CPU, "libc": t.Libc}
	a := archs{}
	for _, k := range []string{"os", "cpu", "libc"} {
		list, ok := supported[k]
		if !ok || len(list) == 0 {
			list = []string{"current"}
		}
		for _, v := range list {
			if v == "current" {
				v = cur[k]
			}
			if v != "" {
				a[k] = append(a[k], v)
			}
		}
	}
	return a
}
