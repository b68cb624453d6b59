package cli

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/docker/cli/cli/config"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/spf13/pflag"

	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/deps/deb"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/registry"
)

func recipeSchema() []byte { return recipe.Schema }

// connFlags are the BuildKit connection flags every building command has.
type connFlags struct {
	// networkHost is set by connect for a recipe with network: host layers.
	networkHost                             bool
	addr, tlsCA, tlsCert, tlsKey, tlsServer string
	stateDir, buildkitd                     string
	insecure                                []string
	connectTimeout                          time.Duration
}

func (f *connFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "", "buildkitd address: unix://, tcp://, docker-container://, kube-pod://, ssh:// (default $BUILDKIT_HOST, else vmbuild's managed local daemon)")
	fs.StringVar(&f.tlsCA, "tlscacert", "", "CA certificate for a tcp:// buildkitd")
	fs.StringVar(&f.tlsCert, "tlscert", "", "client certificate for a tcp:// buildkitd")
	fs.StringVar(&f.tlsKey, "tlskey", "", "client key for a tcp:// buildkitd")
	fs.StringVar(&f.tlsServer, "tlsservername", "", "server name to verify for a tcp:// buildkitd")
	fs.StringVar(&f.stateDir, "state-dir", "", "managed daemon state directory (default $VMBUILD_STATE_DIR, else ~/.cache/vmbuild/buildkitd)")
	fs.StringVar(&f.buildkitd, "buildkitd", "", "buildkitd program for the managed daemon (default $VMBUILD_BUILDKITD, else beside vmbuild, else $PATH)")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host:port reached over plain http (loopback registries always are)")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 20*time.Second, "time allowed to reach buildkitd")
}

func (f *connFlags) daemonOptions(a *app) buildkit.DaemonOptions {
	return buildkit.DaemonOptions{
		StateDir:           firstNonEmpty(f.stateDir, os.Getenv("VMBUILD_STATE_DIR")),
		Binary:             firstNonEmpty(f.buildkitd, os.Getenv("VMBUILD_BUILDKITD")),
		InsecureRegistries: f.insecure,
		NetworkHost:        f.networkHost,
		Logger:             a.log,
	}
}

func (f *connFlags) connectOptions(a *app) buildkit.ConnectOptions {
	return buildkit.ConnectOptions{
		Addr:    firstNonEmpty(f.addr, os.Getenv("BUILDKIT_HOST")),
		TLS:     buildkit.TLS{CACert: f.tlsCA, Cert: f.tlsCert, Key: f.tlsKey, ServerName: f.tlsServer},
		Daemon:  f.daemonOptions(a),
		Timeout: f.connectTimeout,
	}
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// findHelper locates the static vmbuild-helper that patch steps run:
// $VMBUILD_HELPER, beside the vmbuild executable, $PATH, and finally
// vmbuild itself when it is statically linked (it acts as the helper when
// invoked under that name).
func findHelper(explicit string) (string, error) {
	if p := firstNonEmpty(explicit, os.Getenv("VMBUILD_HELPER")); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("finding vmbuild-helper: %w: %v", errs.ErrMissingTool, err)
		}
		return p, nil
	}
	exe, _ := os.Executable()
	if exe != "" {
		p := filepath.Join(filepath.Dir(exe), "vmbuild-helper")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("vmbuild-helper"); err == nil {
		return p, nil
	}
	if exe != "" && isStatic(exe) {
		return exe, nil
	}
	return "", nil // only an error when the recipe has patches (build says so)
}

func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// dockerAuth is the BuildKit session attachable that answers registry
// credential requests from the Docker config file, as buildx does.
func dockerAuth(stderr io.Writer) session.Attachable {
	cfg := config.LoadDefaultConfigFile(stderr)
	return authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: authprovider.LoadAuthConfig(cfg),
	})
}

func (f *connFlags) registryClient(a *app) *registry.Client {
	return registry.New(registry.WithInsecure(f.insecure...), registry.WithLogger(a.log))
}

// loadRecipeAndLock loads the recipe and checks its lock. With update, a
// missing or stale lock is (re)written first.
func (a *app) loadRecipeAndLock(ctx context.Context, path string, update bool, reg *registry.Client) (*recipe.Recipe, *lock.Lock, error) {
	r, err := recipe.Load(path)
	if err != nil {
		return nil, nil, err
	}
	l, err := lock.Read(r.LockPath())
	switch {
	case err == nil:
		if cerr := lock.Check(r, l, r.LockPath()); cerr != nil {
			if !update {
				return nil, nil, cerr
			}
			a.log.Info("lock is stale; re-locking", "reason", cerr.Error())
			l, err = a.relock(ctx, r, l, lock.Options{}, reg)
			if err != nil {
				return nil, nil, err
			}
		}
	case update:
		l, err = a.relock(ctx, r, nil, lock.Options{}, reg)
		if err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, err
	}
	return r, l, nil
}

func (a *app) resolver(reg *registry.Client, r *recipe.Recipe) lock.Resolver {
	return lock.Resolver{
		Git:    lock.GitCLI{CacheDir: gitCacheDir()},
		Images: lock.Images{Registry: reg, BaseDir: r.Dir},
		// Debian's Packages indexes (10 MiB for sid) are kept, and read
		// again only while the freshly fetched, verified InRelease still
		// names their sha256.
		Debian: []deb.Option{deb.WithCacheDir(filepath.Join(cacheDir(), "debian"))},
		Logger: a.log,
	}
}

func (a *app) relock(ctx context.Context, r *recipe.Recipe, prev *lock.Lock, opts lock.Options, reg *registry.Client) (*lock.Lock, error) {
	l, err := a.resolver(reg, r).Resolve(ctx, r, prev, opts)
	if err != nil {
		return nil, err
	}
	if err := lock.Write(r.LockPath(), l); err != nil {
		return nil, err
	}
	for _, line := range lock.Diff(prev, l) {
		a.log.Info("lock: " + line)
	}
	return l, nil
}

func cacheDir() string {
	if d := os.Getenv("VMBUILD_CACHE_DIR"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "vmbuild")
}

func gitCacheDir() string { return filepath.Join(cacheDir(), "git") }
