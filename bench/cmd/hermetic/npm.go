package main

import (
	"context"
	"embed"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vmbuild/vmbuild/bench/internal/harness"
)

// Scenario 3: npm, a real package-lock.json (made by npm 11 on the host:
// express 4, pino 9, dotenv; 87 packages, one dev dependency), and a bump
// of dotenv 16.4.5 → 16.4.7 (one package).

//go:embed testdata/npm
var npmData embed.FS

const npmRegistry = "https://registry.npmjs.org"

var npmContenders = []string{"hermetic", "baseline"}

func (b *bench) npm(ctx context.Context) *Scenario {
	s := &Scenario{ID: "npm", Title: "npm: a real package-lock.json of 87 packages", Facts: map[string]any{}}
	b.res.Scenarios = append(b.res.Scenarios, s)
	proxy, err := harness.NewProxyCounter(npmRegistry)
	if err != nil {
		b.errorf("npm: %v", err)
		return s
	}
	defer proxy.Close()
	b.pkgs, b.isPkg = proxy, harness.IsTarball
	defer func() { b.pkgs = nil }()
	recipes, commits, err := b.npmSetup(ctx, s, proxy)
	if err != nil {
		b.errorf("npm: setup: %v", err)
		return s
	}
	for rep := 1; rep <= b.repsOf(s); rep++ {
		order := npmContenders
		if rep%2 == 0 {
			order = []string{npmContenders[1], npmContenders[0]}
		}
		for _, c := range order {
			if ctx.Err() != nil {
				return s
			}
			if err := b.npmSequence(ctx, s, recipes[c], commits, c, rep); err != nil && !s.recorded(err) {
				b.errorf("npm: %s, rep %d: %v", c, rep, err)
			}
		}
	}
	return s
}

func (b *bench) npmSetup(ctx context.Context, s *Scenario, proxy *harness.Counter) (map[string]string, []string, error) {
	dir := filepath.Join(b.work, "npm")
	up := filepath.Join(dir, "up")
	repo, gitURL, err := b.newRepo(ctx, "npm-app", up)
	if err != nil {
		return nil, nil, err
	}
	var commits []string
	for i, v := range []string{"v1", "v2"} {
		files := map[string]string{"index.js": "require('express'); require('pino'); require('dotenv');\nconsole.log('ok');\n"}
		for _, f := range []string{"package.json", "package-lock.json"} {
			b, err := npmData.ReadFile("testdata/npm/" + v + "/" + f)
			if err != nil {
				return nil, nil, fmt.Errorf("reading testdata/npm/%s/%s: %w", v, f, err)
			}
			files[f] = string(b)
		}
		c, err := commitFiles(ctx, repo, i, v, files)
		if err != nil {
			return nil, nil, err
		}
		commits = append(commits, c)
	}
	header := "apiVersion: vmbuild/v1\nname: npm-%s\nupstream: {git: " + gitURL + ", ref: main}\nplatform: linux/amd64\n" +
		"base:\n  debian:\n    suite: sid\n    mirror: " + b.archive.URL + "/debian\n    allowExpired: true\n    packages: [nodejs, ca-certificates, dash]\n"
	const check = `        node -e 'require("express"); require("pino"); console.log(require("dotenv/package.json").version)' > /app/dotenv-version` + "\n"
	layers := map[string]string{
		"hermetic": `build:
  layers:
    - name: modules
      inputs: [package.json, package-lock.json]
      deps: {manager: npm, production: true, registry: "` + proxy.URL + `"}
      run: |
        npm ci --omit=dev --ignore-scripts --no-audit --no-fund
` + check + `      outputs: [/app/node_modules, /app/dotenv-version]
`,
		"baseline": `build:
  layers:
    - name: modules
      inputs: [package.json, package-lock.json]
      network: host
      env:
        COREPACK_NPM_REGISTRY: "` + proxy.URL + `"
        COREPACK_HOME: /tmp/corepack
        COREPACK_ENABLE_DOWNLOAD_PROMPT: "0"
        COREPACK_INTEGRITY_KEYS: "0"
        npm_config_registry: "` + proxy.URL + `/"
      run: |
        node /usr/bin/corepack npm ci --omit=dev --ignore-scripts --no-audit --no-fund
` + check + `      outputs: [/app/node_modules, /app/dotenv-version]
`,
	}
	recipes := map[string]string{}
	for _, c := range npmContenders {
		p := filepath.Join(dir, c, "npm.yaml")
		if err := writeFiles(filepath.Dir(p), map[string]string{"npm.yaml": fmt.Sprintf(header, c) + layers[c]}); err != nil {
			return nil, nil, err
		}
		recipes[c] = p
	}
	s.Setup = append(s.Setup,
		"Upstream: package.json (express 4.21.2, pino 9.6.0, dotenv 16.4.5; is-number as a dev dependency; `packageManager: npm@10.9.2`) and its package-lock.json (lockfileVersion 3, 87 packages, `resolved` URLs on registry.npmjs.org) made by npm 11 on the host and committed in bench/cmd/hermetic/testdata/npm; the bump is dotenv 16.4.5 → 16.4.7 made the same way (one package moves). Served by `git daemon`.",
		"Base: the streaming recipe's (sid: nodejs, ca-certificates, dash), through the counting archive proxy.",
		"Contenders: **hermetic** = `deps: {manager: npm, production: true, registry: the counting proxy to "+npmRegistry+"}` and `npm ci --omit=dev` (npm 10.9.2 pinned from packageManager); **baseline** = `network: host`, no deps, `node /usr/bin/corepack npm ci --omit=dev` (sid's nodejs has no npm, but its node-corepack is in the base, run with node since the base has no `env` for its `#!/usr/bin/env node`: Corepack fetches npm 10.9.2 from packageManager through the same proxy, `COREPACK_INTEGRITY_KEYS=0` since the proxy is not the registry Corepack has keys for; npm then fetches the packages through the proxy, `npm_config_registry`).")
	return recipes, commits, nil
}

func (b *bench) npmSequence(ctx context.Context, s *Scenario, path string, commits []string, contender string, rep int) error {
	d, out, record, done, err := b.sequence(ctx, s, "npm", "npm", contender, rep)
	if err != nil {
		return err
	}
	defer done()
	r, l, run, err := b.lock(ctx, path, lockOpts{Fresh: true, Commit: commits[0]})
	record("lock", run, err)
	if err != nil {
		return err
	}
	if ld, ok := l.DepsLock.LayerDeps("modules"); ok {
		s.Facts["pinnedPackages"] = len(ld.Packages)
	}
	var cold Run
	for _, phase := range []string{"cold", "noop", "relock", "bump"} {
		if phase == "relock" {
			r, l, run, err = b.lock(ctx, path, lockOpts{Commit: commits[1]})
			record(phase, run, err)
			if err != nil {
				return err
			}
			continue
		}
		res, run, err := b.build(ctx, d, r, l, out, fmt.Sprintf("npm-%s-%s-%d", contender, phase, rep))
		if err == nil {
			want := "16.4.5\n"
			if phase == "bump" {
				want = "16.4.7\n"
			}
			if got, _, ferr := imageFile(out, res, "/app/dotenv-version"); ferr != nil {
				err = ferr
			} else if got != want {
				err = fmt.Errorf("%w: the image's dotenv is %q, want %q", errCheck, got, want)
			}
		}
		if err == nil {
			switch phase {
			case "cold":
				if (run.Debs == 0 && !run.ReusedDaemon) || len(run.LayerSteps) != 1 {
					err = fmt.Errorf("%w: the cold build fetched %d .debs and ran %v: not cold", errCheck, run.Debs, run.LayerSteps)
				}
			case "noop":
				if run.Proxy.Requests != 0 || run.Archive.Requests != 0 || len(run.LayerSteps) != 0 || run.Digest != cold.Digest {
					err = fmt.Errorf("%w: the no-op rebuild fetched (registry: %s; archive: %s), ran %v or changed the digest", errCheck, run.Proxy, run.Archive, run.LayerSteps)
				}
			case "bump":
				if contender == "hermetic" && !run.ReusedDaemon && (run.Packages != 1 || !strings.Contains(strings.Join(run.Proxy.Paths, " "), "dotenv-16.4.7.tgz")) {
					err = fmt.Errorf("%w: the bump fetched %d packages (%v), want dotenv 16.4.7 only", errCheck, run.Packages, run.Proxy.Paths)
				}
			}
		}
		record(phase, run, err)
		if err != nil {
			return err
		}
		if phase == "cold" {
			cold = run
		}
	}
	return nil
}
