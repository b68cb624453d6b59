package cli

import (
	"context"
	"encoding/csv"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/spf13/pflag"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
)

// buildFlags are the flags of every command that builds (build, track,
// patch check, patch export): the BuildKit connection, the helper, the
// progress display and, for build and track, the cache.
type buildFlags struct {
	conn      connFlags
	helper    string
	progress  string
	cacheFrom []string
	cacheTo   []string
}

func (f *buildFlags) register(fs *pflag.FlagSet, progress string, cache bool) {
	f.conn.register(fs)
	fs.StringVar(&f.helper, "helper", "", "vmbuild-helper binary for patch steps (default $VMBUILD_HELPER, beside vmbuild, $PATH)")
	fs.StringVar(&f.progress, "progress", progress, "BuildKit progress: auto, tty, plain, quiet, rawjson")
	if cache {
		// One value per flag, as buildx: a value is a comma-separated list.
		fs.StringArrayVar(&f.cacheFrom, "cache-from", nil, "import build cache: type=registry,ref=REG/REPO:buildcache (BuildKit's syntax; repeat the flag for several)")
		fs.StringArrayVar(&f.cacheTo, "cache-to", nil, "export build cache: type=registry,ref=REG/REPO:buildcache[,mode=min] (a registry export defaults to mode=max)")
	}
}

// options is the one translation of the building flags into build.Options,
// for every command that builds. The command sets the output; connect
// sets the client.
func (f *buildFlags) options(a *app) (build.Options, error) {
	mode, err := progressMode(f.progress)
	if err != nil {
		return build.Options{}, err
	}
	helper, err := findHelper(f.helper)
	if err != nil {
		return build.Options{}, err
	}
	imports, err := cacheOptions("--cache-from", f.cacheFrom)
	if err != nil {
		return build.Options{}, err
	}
	exports, err := cacheOptions("--cache-to", f.cacheTo)
	if err != nil {
		return build.Options{}, err
	}
	return build.Options{
		HelperPath:   helper,
		CacheImports: imports,
		CacheExports: exports,
		Session:      []session.Attachable{dockerAuth(a.stderr)},
		// git's own credential helpers; lock.GitCLI asks them.
		GitCredentials: lock.GitCLI{}.Credential,
		Progress:       a.stderr,
		ProgressMode:   mode,
		WorkDir:        filepath.Join(cacheDir(), "work"),
		Logger:         a.log,
	}, nil
}

// connect reaches buildkitd and sets opts' client. networkHost asks the
// managed daemon to allow network: host (for a recipe with such layers).
func (f *connFlags) connect(ctx context.Context, a *app, opts *build.Options, networkHost bool) (*buildkit.Conn, error) {
	c := *f
	c.networkHost = networkHost
	conn, err := buildkit.Connect(ctx, c.connectOptions(a))
	if err != nil {
		return nil, err
	}
	if opts != nil {
		opts.Client, opts.BuildKitVersion = conn.Client, conn.Version
	}
	return conn, nil
}

func progressMode(s string) (progressui.DisplayMode, error) {
	switch s {
	case "auto", "":
		return progressui.AutoMode, nil
	case "tty":
		return progressui.TtyMode, nil
	case "plain":
		return progressui.PlainMode, nil
	case "quiet":
		return progressui.QuietMode, nil
	case "rawjson":
		return progressui.RawJSONMode, nil
	}
	return "", fmt.Errorf("%w: --progress must be auto, tty, plain, quiet or rawjson, not %q", errs.ErrUsage, s)
}

// cacheOptions parses the values of --cache-from or --cache-to, one cache
// each, in buildx's syntax: comma-separated key=value fields (CSV: a
// field with a comma is quoted), among them type=; a value without "=" is
// a registry ref (type=registry,ref=VALUE).
func cacheOptions(flag string, values []string) ([]client.CacheOptionsEntry, error) {
	var out []client.CacheOptionsEntry
	for _, s := range values {
		e, err := parseCacheOption(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s %q: %v", errs.ErrUsage, flag, s, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseCacheOption(s string) (client.CacheOptionsEntry, error) {
	e := client.CacheOptionsEntry{Attrs: map[string]string{}}
	fields, err := csv.NewReader(strings.NewReader(s)).Read()
	if err != nil {
		return e, fmt.Errorf("expected type=TYPE,key=value,…: %v", err)
	}
	if len(fields) == 1 && !strings.Contains(fields[0], "=") {
		e.Type, e.Attrs["ref"] = "registry", fields[0]
		return e, nil
	}
	for _, kv := range fields {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			return e, fmt.Errorf("field %q: expected key=value", kv)
		}
		if k == "type" {
			e.Type = v
		} else {
			e.Attrs[k] = v
		}
	}
	switch {
	case e.Type == "":
		return e, fmt.Errorf("type= is required (e.g. type=registry,ref=REG/REPO:buildcache)")
	case e.Type == "registry" && e.Attrs["ref"] == "":
		return e, fmt.Errorf("a registry cache needs ref=REG/REPO:TAG")
	}
	return e, nil
}

// outputFlags say where build and track put the image.
type outputFlags struct {
	output string
	push   string
}

// target is where an image goes: an OCI layout directory or a registry
// repository.
type target struct {
	// ociDir is the OCI layout directory; "" is the default, out/NAME.
	ociDir string
	// repo is the registry repository to push to, when not "".
	repo string
	// tag is the tag --push REPO:TAG gives; "" when it gives none.
	tag string
}

// parseTarget is the one parser of --output and --push. --output is
// oci:DIR, an OCI image layout (the only local output); a value without
// oci: is refused, never guessed at. --push is REPO[:TAG], by name, not
// digest.
func parseTarget(output, push string) (target, error) {
	if output != "" && push != "" {
		return target{}, fmt.Errorf("%w: give --output or --push, not both", errs.ErrUsage)
	}
	if push != "" {
		named, err := reference.ParseNormalizedNamed(push)
		if err != nil {
			return target{}, fmt.Errorf("%w: --push %q: %v (give REPO[:TAG])", errs.ErrUsage, push, err)
		}
		if _, ok := named.(reference.Digested); ok {
			return target{}, fmt.Errorf("%w: --push %q: give a repository and optional tag, not a digest", errs.ErrUsage, push)
		}
		t := target{repo: reference.TrimNamed(named).String()}
		if tg, ok := named.(reference.Tagged); ok {
			t.tag = tg.Tag()
		}
		return t, nil
	}
	if output == "" {
		return target{}, nil
	}
	dir, ok := strings.CutPrefix(output, "oci:")
	switch {
	case !ok && !strings.Contains(output, "="):
		return target{}, fmt.Errorf("%w: --output %q: the output is oci:DIR, an OCI image layout (--output oci:%s); to push to a registry use --push REPO[:TAG]", errs.ErrUsage, output, output)
	case !ok:
		return target{}, fmt.Errorf("%w: --output %q: the output is oci:DIR, an OCI image layout; to push to a registry use --push REPO[:TAG]", errs.ErrUsage, output)
	case dir == "":
		return target{}, fmt.Errorf("%w: --output %q: give the layout directory, oci:DIR", errs.ErrUsage, output)
	}
	return target{ociDir: filepath.Clean(dir)}, nil
}
