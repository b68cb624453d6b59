package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vmbuild/vmbuild/bench/internal/harness"
)

// Scenario 1 (issue #12) and 5 (#14): the real Mastodon streaming server
// (recipes/mastodon/streaming-hermetic.yaml on a clone of the bundle).

const (
	yarnVersion  = "4.18.0"
	yarnRelease  = ".yarn/releases/yarn-" + yarnVersion + ".cjs"
	yarnRegistry = "https://registry.yarnpkg.com"
	yarnCLIDist  = "https://registry.npmjs.org/@yarnpkg/cli-dist/-/cli-dist-" + yarnVersion + ".tgz"
	// The bump: a real one, made by the real Yarn on the host.
	bumpPackage = "pg"
	bumpTo      = "8.23.1"
)

// bumpFiles are the files the bump commits.
var bumpFiles = []string{"yarn.lock", "package.json", "streaming/package.json"}

// yarnScenario holds the scenario's inputs.
type yarnScenario struct {
	dir        string // work/yarn
	up         string // the clone
	proxy      *harness.Counter
	hermetic   string // recipe paths
	baseline   string
	importMain string // commits: main (hermetic) and baseline branches
	bumpMain   string
	importBase string
	bumpBase   string
}

func (b *bench) yarn(ctx context.Context, bundle string) *Scenario {
	s := &Scenario{ID: "yarn", Title: "Yarn: the real Mastodon streaming server (issue #12), and the streaming image (#14)", Facts: map[string]any{}}
	b.res.Scenarios = append(b.res.Scenarios, s)
	y, err := b.yarnSetup(ctx, s, bundle)
	if err != nil {
		b.errorf("yarn: setup: %v", err)
		return s
	}
	defer y.proxy.Close()
	b.pkgs, b.isPkg = y.proxy, harness.IsTarball
	defer func() { b.pkgs = nil }()
	contenders := []string{"hermetic", "baseline"}
	for rep := 1; rep <= b.repsOf(s); rep++ {
		order := contenders
		if rep%2 == 0 {
			order = []string{contenders[1], contenders[0]}
		}
		for _, c := range order {
			if ctx.Err() != nil {
				return s
			}
			if err := b.yarnSequence(ctx, s, y, c, rep); err != nil && !s.recorded(err) {
				b.errorf("yarn: %s, rep %d: %v", c, rep, err)
			}
		}
	}
	return s
}

func (b *bench) yarnSetup(ctx context.Context, s *Scenario, bundle string) (*yarnScenario, error) {
	y := &yarnScenario{dir: filepath.Join(b.work, "yarn")}
	y.up = filepath.Join(y.dir, "up")
	// The upstream as the committed recipe has it, a remote git
	// repository: a clone of the bundle, served by git daemon on loopback.
	repo, gitURL, err := b.cloneRepo(ctx, bundle, "mastodon", y.up, "main")
	if err != nil {
		return nil, err
	}
	if y.importMain, err = repo.Head(ctx); err != nil {
		return nil, fmt.Errorf("reading the bundle's main: %w", err)
	}
	s.Setup = append(s.Setup, fmt.Sprintf("Upstream: a clone of the Mastodon bundle (`%s`), main at `%s`.", filepath.Base(bundle), harness.Short(y.importMain)))

	// The host's Yarn: @yarnpkg/cli-dist's bin/yarn.js, as upstream
	// projects vendor it.
	yarnJS, tgzSum, err := fetchYarn(ctx, filepath.Join(y.dir, "yarn-"+yarnVersion+".cjs"))
	if err != nil {
		return nil, fmt.Errorf("downloading Yarn (%s): %w", yarnCLIDist, err)
	}
	s.Facts["yarnCliDistSha256"] = tgzSum

	// The bump, by the real Yarn with the network (not through the proxy,
	// not timed): `yarn up pg@8.23.1` in the streaming workspace, lockfile
	// only.
	before, err := os.ReadFile(filepath.Join(y.up, "yarn.lock"))
	if err != nil {
		return nil, err
	}
	home := filepath.Join(y.dir, "home")
	cmd := exec.CommandContext(ctx, "node", yarnJS, "up", bumpPackage+"@"+bumpTo, "--mode=update-lockfile")
	cmd.Dir = filepath.Join(y.up, "streaming")
	cmd.Env = append(os.Environ(), "HOME="+home, "YARN_ENABLE_TELEMETRY=0", "YARN_ENABLE_PROGRESS_BARS=0", "CI=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("bumping %s to %s (yarn up): %w\n%s", bumpPackage, bumpTo, err, harness.TailLines(string(out), 30))
	}
	s.Facts["bumpYarnUpSeconds"] = time.Since(start).Seconds()
	after, err := os.ReadFile(filepath.Join(y.up, "yarn.lock"))
	if err != nil {
		return nil, err
	}
	added, removed := yarnLockDiff(string(before), string(after))
	s.Facts["bumpAdded"] = added
	s.Facts["bumpRemoved"] = removed
	if len(added) == 0 {
		return nil, fmt.Errorf("yarn up %s@%s changed no resolution in yarn.lock", bumpPackage, bumpTo)
	}
	changed, err := repo.Git(ctx, "status", "--porcelain")
	if err != nil {
		return nil, fmt.Errorf("listing the bump's changes: %w", err)
	}
	s.Facts["bumpFilesChanged"] = strings.Split(changed, "\n")
	// Commit the manifests and the lockfile only (what a bump's pull
	// request has): keep them, reset the tree, put them back.
	bumped := map[string]string{}
	for _, f := range bumpFiles {
		c, err := os.ReadFile(filepath.Join(y.up, f))
		if err != nil {
			return nil, fmt.Errorf("reading the bumped %s: %w", f, err)
		}
		bumped[f] = string(c)
	}
	if _, err := repo.Git(ctx, "checkout", "-q", "-f", "main"); err != nil {
		return nil, fmt.Errorf("resetting the work tree: %w", err)
	}
	if y.bumpMain, err = commitFiles(ctx, repo, 1, fmt.Sprintf("streaming: bump %s to %s (yarn up)", bumpPackage, bumpTo), bumped); err != nil {
		return nil, err
	}
	s.Setup = append(s.Setup, fmt.Sprintf("Bump: `node yarn-%s.cjs up %s@%s --mode=update-lockfile` in `streaming/` on the host (Node %s, the network), committed on main as `%s` (%s). Resolutions added: %s; removed: %s.",
		yarnVersion, bumpPackage, bumpTo, nodeVersion(), harness.Short(y.bumpMain), strings.Join(bumpFiles, ", "), codeList(added), codeList(removed)))

	// The baseline's branch: Yarn vendored as upstream projects do
	// (yarnPath), then the same bump.
	if _, err := repo.Git(ctx, "checkout", "-q", "-b", "baseline", y.importMain); err != nil {
		return nil, fmt.Errorf("creating the baseline branch: %w", err)
	}
	js, err := os.ReadFile(yarnJS)
	if err != nil {
		return nil, fmt.Errorf("reading Yarn: %w", err)
	}
	rc, err := os.ReadFile(filepath.Join(y.up, ".yarnrc.yml"))
	if err != nil {
		return nil, fmt.Errorf("reading .yarnrc.yml: %w", err)
	}
	if err := writeFiles(y.up, map[string]string{yarnRelease: string(js), ".yarnrc.yml": string(rc) + "\nyarnPath: " + yarnRelease + "\n"}); err != nil {
		return nil, fmt.Errorf("vendoring Yarn: %w", err)
	}
	if _, err := repo.Git(ctx, "add", "-f", yarnRelease); err != nil {
		return nil, fmt.Errorf("adding %s: %w", yarnRelease, err)
	}
	if y.importBase, err = commitFiles(ctx, repo, 2, "vendor Yarn "+yarnVersion+" (yarnPath)", nil); err != nil {
		return nil, err
	}
	if y.bumpBase, err = commitFiles(ctx, repo, 3, fmt.Sprintf("streaming: bump %s to %s (yarn up)", bumpPackage, bumpTo), bumped); err != nil {
		return nil, err
	}
	if _, err := repo.Git(ctx, "checkout", "-q", "-f", "main"); err != nil {
		return nil, fmt.Errorf("checking out main: %w", err)
	}
	s.Setup = append(s.Setup, fmt.Sprintf("Baseline branch: main + `%s` (@yarnpkg/cli-dist %s's bin/yarn.js) and `yarnPath` in .yarnrc.yml, committed in the bench's clone (`%s`), then the same bump (`%s`).",
		yarnRelease, yarnVersion, harness.Short(y.importBase), harness.Short(y.bumpBase)))

	// The counting proxy in front of the registry.
	if y.proxy, err = harness.NewProxyCounter(yarnRegistry); err != nil {
		return nil, fmt.Errorf("starting the registry proxy: %w", err)
	}

	raw, err := os.ReadFile(filepath.Join(b.root, "recipes", "mastodon", "streaming-hermetic.yaml"))
	if err != nil {
		return nil, err
	}
	body, err := replaceAll(string(raw),
		"  git: https://github.com/mastodon/mastodon.git\n", "  git: "+gitURL+"\n",
		"    suite: sid\n", "    suite: sid\n    allowExpired: true\n")
	if err == nil {
		body, err = b.withMirror(body, "sid")
	}
	if err != nil {
		return nil, fmt.Errorf("recipes/mastodon/streaming-hermetic.yaml: %w", err)
	}
	herm, err := replaceAll(body, "        production: true\n", "        production: true\n        registry: "+y.proxy.URL+"\n")
	if err != nil {
		return nil, fmt.Errorf("recipes/mastodon/streaming-hermetic.yaml: %w", err)
	}
	base, err := replaceAll(body,
		"  ref: main\n", "  ref: baseline\n",
		"      inputs: [package.json, yarn.lock, .yarnrc.yml, streaming/package.json]\n", "      inputs: [package.json, yarn.lock, .yarnrc.yml, streaming/package.json, "+yarnRelease+"]\n",
		`      deps:
        manager: yarn
        workspaces: ["@mastodon/streaming"]
        production: true
      run: yarn workspaces focus --production @mastodon/streaming
`, `      network: host
      env:
        YARN_NPM_REGISTRY_SERVER: `+y.proxy.URL+`
        YARN_UNSAFE_HTTP_WHITELIST: 127.0.0.1
        YARN_ENABLE_TELEMETRY: "0"
      run: node `+yarnRelease+` workspaces focus --production @mastodon/streaming
`)
	if err != nil {
		return nil, fmt.Errorf("recipes/mastodon/streaming-hermetic.yaml: %w", err)
	}
	y.hermetic = filepath.Join(y.dir, "hermetic", "streaming.yaml")
	y.baseline = filepath.Join(y.dir, "baseline", "streaming.yaml")
	for p, body := range map[string]string{y.hermetic: herm, y.baseline: base} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	s.Setup = append(s.Setup,
		"Hermetic recipe: recipes/mastodon/streaming-hermetic.yaml as committed, with `upstream.git` the clone served by `git daemon` on loopback (a remote repository, as github.com is to the committed recipe: BuildKit's git source fetches it), `base.debian.allowExpired: true` (sid's InRelease as deb.debian.org serves it to this machine is past its Valid-Until, which vmbuild refuses like apt unless allowed), `base.debian.mirror` the counting archive proxy and `deps.registry` the counting registry proxy.",
		"Baseline recipe: the same recipe (same Debian base, same inputs plus the vendored Yarn, same outputs and image) with the layer as a Dockerfile RUN would have it: `network: host`, no `deps`, `node "+yarnRelease+" workspaces focus --production @mastodon/streaming` with `YARN_NPM_REGISTRY_SERVER` the counting proxy (plain http on loopback, reachable through the host network; the base trusts no CA for the proxy's https) and `YARN_UNSAFE_HTTP_WHITELIST=127.0.0.1`.",
		"Counting proxies: reverse proxies on 127.0.0.1 to "+yarnRegistry+" and to https://deb.debian.org, counting requests and response bytes. Every fetch goes through them: vmbuild lock's hashing downloads and index reads, BuildKit's fetches (hermetic), Yarn's (baseline).")

	// One untimed lock, to check the recipe and warm the Debian index
	// cache the scenarios share.
	_, l, _, err := b.lock(ctx, y.hermetic, lockOpts{Fresh: true})
	if err != nil {
		return nil, err
	}
	y.proxy.Take()
	if ld, ok := l.DepsLock.LayerDeps("node-modules"); ok && ld.Tool != nil {
		if ld.Tool.SHA256 != tgzSum {
			return nil, fmt.Errorf("the host's Yarn tarball has sha256 %s, the lock pins %s", tgzSum, ld.Tool.SHA256)
		}
		s.Facts["pinnedPackages"] = len(ld.Packages)
		s.Facts["toolPin"] = ld.Tool.ID() + " " + ld.Tool.URL
	}
	if l.Debian != nil {
		s.Facts["debianPackages"] = l.Debian.Packages
		s.Facts["debianInRelease"] = l.Debian.InRelease.Date.Format("2006-01-02") + " (" + l.Debian.Suite + ")"
	}
	return y, nil
}

// yarnSequence: on a fresh daemon, lock (no download cache), cold build,
// no-op rebuild, re-lock at the bump, rebuild.
func (b *bench) yarnSequence(ctx context.Context, s *Scenario, y *yarnScenario, contender string, rep int) error {
	path, first, bump := y.hermetic, y.importMain, y.bumpMain
	if contender == "baseline" {
		path, first, bump = y.baseline, y.importBase, y.bumpBase
	}
	d, out, record, done, err := b.sequence(ctx, s, "yarn", "yarn", contender, rep)
	if err != nil {
		return err
	}
	defer done()

	r, l, run, err := b.lock(ctx, path, lockOpts{Fresh: true, Commit: first})
	record("lock", run, err)
	if err != nil {
		return err
	}
	if l.Upstream.Commit != first {
		return fmt.Errorf("locked %s, want %s", l.Upstream.Commit, first)
	}
	steps := []struct {
		phase  string
		commit string
	}{{"cold", ""}, {"noop", ""}, {"relock", bump}, {"bump", ""}}
	var cold Run
	for _, st := range steps {
		if st.phase == "relock" {
			r, l, run, err = b.lock(ctx, path, lockOpts{Commit: st.commit})
			record(st.phase, run, err)
			if err != nil {
				return err
			}
			continue
		}
		res, run, err := b.build(ctx, d, r, l, out, fmt.Sprintf("yarn-%s-%s-%d", contender, st.phase, rep))
		if err == nil {
			err = b.yarnCheck(s, contender, st.phase, run, cold)
		}
		if err == nil {
			// The image has the pg the lock says.
			want := `"version": "8.23.0"`
			if st.phase == "bump" {
				want = `"version": "` + bumpTo + `"`
			}
			got, _, ferr := imageFile(out, res, "/opt/mastodon/node_modules/pg/package.json")
			if ferr != nil {
				err = ferr
			} else if !strings.Contains(got, want) {
				err = fmt.Errorf("%w: node_modules/pg/package.json in the image has no %s", errCheck, want)
			}
		}
		record(st.phase, run, err)
		if err != nil {
			return err
		}
		if st.phase == "cold" {
			cold = run
		}
	}
	return nil
}

// yarnCheck asserts what must hold (not times): a no-op fetches nothing
// and runs nothing; a bump fetches only the moved packages (hermetic),
// and rebuilds the same image digest for the same lock.
func (b *bench) yarnCheck(s *Scenario, contender, phase string, run, cold Run) error {
	switch phase {
	case "cold":
		if (run.Debs == 0 && !run.ReusedDaemon) || len(run.LayerSteps) != 1 {
			return fmt.Errorf("%w: the cold build fetched %d .debs and ran layers %v: not cold", errCheck, run.Debs, run.LayerSteps)
		}
		if run.Proxy.Errors > 0 {
			return fmt.Errorf("%w: the registry answered %d requests with an error", errCheck, run.Proxy.Errors)
		}
	case "noop":
		if run.Proxy.Requests != 0 || run.Packages != 0 || run.Debs != 0 || len(run.LayerSteps) != 0 {
			return fmt.Errorf("%w: the no-op rebuild of the same lock fetched (registry: %s; archive: %s) or ran layers %v", errCheck, run.Proxy, run.Archive, run.LayerSteps)
		}
		if run.Digest != cold.Digest {
			return fmt.Errorf("%w: the no-op rebuild gave %s, the cold build %s", errCheck, run.Digest, cold.Digest)
		}
	case "bump":
		if run.Debs != 0 {
			return fmt.Errorf("%w: the bump fetched %d .debs", errCheck, run.Debs)
		}
		if contender == "hermetic" {
			added, _ := s.Facts["bumpAdded"].([]string)
			if run.Packages > len(added) {
				return fmt.Errorf("%w: the bump fetched %d packages, the bump added only %d resolutions", errCheck, run.Packages, len(added))
			}
		}
	}
	return nil
}

// fetchYarn downloads @yarnpkg/cli-dist and writes its bin/yarn.js to
// dst; it returns dst and the tarball's sha256.
func fetchYarn(ctx context.Context, dst string) (string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, yarnCLIDist, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("downloading %s: %s", yarnCLIDist, resp.Status)
	}
	h := sha256.New()
	zr, err := gzip.NewReader(io.TeeReader(resp.Body, h))
	if err != nil {
		return "", "", err
	}
	tr := tar.NewReader(zr)
	found := false
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", "", err
		}
		if hd.Name != "package/bin/yarn.js" {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return "", "", err
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			return "", "", err
		}
		found = true
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", "", err
	}
	if !found {
		return "", "", fmt.Errorf("%s has no package/bin/yarn.js", yarnCLIDist)
	}
	return dst, hex.EncodeToString(h.Sum(nil)), nil
}

var resolutionRE = regexp.MustCompile(`(?m)^  resolution: "(.+)"$`)

// yarnLockDiff lists the resolutions a Berry lockfile gained and lost.
func yarnLockDiff(before, after string) (added, removed []string) {
	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, g := range resolutionRE.FindAllStringSubmatch(s, -1) {
			m[g[1]] = true
		}
		return m
	}
	a, b := set(before), set(after)
	for k := range b {
		if !a[k] {
			added = append(added, k)
		}
	}
	for k := range a {
		if !b[k] {
			removed = append(removed, k)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}

func replaceAll(s string, oldNew ...string) (string, error) {
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			return "", fmt.Errorf("no %q (the file moved: update bench/cmd/hermetic)", strings.TrimSpace(oldNew[i]))
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return s, nil
}

func nodeVersion() string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func codeList(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	var q []string
	for _, x := range xs {
		q = append(q, "`"+x+"`")
	}
	return strings.Join(q, ", ")
}
