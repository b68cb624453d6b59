package cli

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vmbuild/vmbuild/buildkit"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/provenance"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/verify"
)

// The command line as its help documents it: each case drives the cobra
// root with the documented syntax and checks the job the flags became (or
// the usage error), without running it: no daemon, no registry.

const dg = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

type flagCase struct {
	name string
	args []string
	// want checks the job; wantErr, when set, is a fragment of the usage
	// error expected instead.
	want    func(t *testing.T, a *app, j job)
	wantErr string
}

// parsed runs args through a fresh root whose runner records the job.
func parsed(t *testing.T, args []string) (*app, *cobra.Command, job, error) {
	t.Helper()
	a := newApp(strings.NewReader(""), io.Discard, io.Discard)
	var got job
	a.run = func(ctx context.Context, j job) error { got = j; return nil }
	root := a.rootCommand()
	err := a.execute(context.Background(), root, args)
	return a, root, got, err
}

func buildOf(t *testing.T, j job) *buildJob {
	t.Helper()
	b, ok := j.(*buildJob)
	if !ok {
		t.Fatalf("job %T, want *buildJob", j)
	}
	return b
}

func trackOf(t *testing.T, j job) *trackJob {
	t.Helper()
	b, ok := j.(*trackJob)
	if !ok {
		t.Fatalf("job %T, want *trackJob", j)
	}
	return b
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func cache(typ string, kv ...string) client.CacheOptionsEntry {
	e := client.CacheOptionsEntry{Type: typ, Attrs: map[string]string{}}
	for i := 0; i < len(kv); i += 2 {
		e.Attrs[kv[i]] = kv[i+1]
	}
	return e
}

// connArgs are the BuildKit connection flags, as documented.
var connArgs = []string{"--addr", "tcp://buildkitd.example:1234", "--tlscacert", "ca.pem", "--tlscert", "cert.pem", "--tlskey", "key.pem",
	"--tlsservername", "buildkitd.example", "--state-dir", "/var/lib/vmb", "--buildkitd", "/opt/buildkitd",
	"--insecure-registry", "reg.local:5000", "--insecure-registry", "other.local:5000,third.local:5000", "--connect-timeout", "5s"}

func wantConn(t *testing.T, a *app, c connFlags) {
	t.Helper()
	got := c.connectOptions(a)
	eq(t, "connect options", got, buildkit.ConnectOptions{
		Addr: "tcp://buildkitd.example:1234",
		TLS:  buildkit.TLS{CACert: "ca.pem", Cert: "cert.pem", Key: "key.pem", ServerName: "buildkitd.example"},
		Daemon: buildkit.DaemonOptions{StateDir: "/var/lib/vmb", Binary: "/opt/buildkitd",
			InsecureRegistries: []string{"reg.local:5000", "other.local:5000", "third.local:5000"}, Logger: a.log},
		Timeout: 5 * time.Second,
	})
}

func flagCases(t *testing.T) []flagCase {
	helper := filepath.Join(t.TempDir(), "vmbuild-helper")
	if err := os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	R := "app.yaml"
	return []flagCase{
		// vmbuild build
		{name: "build defaults", args: []string{"build", R}, want: func(t *testing.T, a *app, j job) {
			b := buildOf(t, j)
			eq(t, "recipe", b.recipe, R)
			eq(t, "target", b.out, target{tag: "latest"})
			eq(t, "progress", b.opts.ProgressMode, progressui.AutoMode)
			eq(t, "cache", [][]client.CacheOptionsEntry{b.opts.CacheImports, b.opts.CacheExports}, [][]client.CacheOptionsEntry{nil, nil})
			eq(t, "formats", b.formats, sign.FormatLegacy)
			if b.opts.Logger == nil || b.opts.Progress == nil || b.opts.GitCredentials == nil || len(b.opts.Session) != 1 || b.opts.WorkDir == "" {
				t.Errorf("options not filled in: %+v", b.opts)
			}
		}},
		{name: "build -o oci:DIR", args: []string{"build", R, "-o", "oci:out/x"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "target", buildOf(t, j).out, target{ociDir: "out/x", tag: "latest"})
		}},
		{name: "build --output oci:DIR --tag", args: []string{"build", R, "--output", "oci:/srv/oci/app/", "--tag", "v1"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "target", buildOf(t, j).out, target{ociDir: "/srv/oci/app", tag: "v1"})
		}},
		{name: "build -o x", args: []string{"build", R, "-o", "x"}, wantErr: "--output oci:x"},
		{name: "build -o out/x", args: []string{"build", R, "-o", "out/x"}, wantErr: "--output oci:out/x"},
		{name: "build -o oci:", args: []string{"build", R, "-o", "oci:"}, wantErr: "give the layout directory"},
		{name: "build -o buildx syntax", args: []string{"build", R, "-o", "type=oci,dest=x"}, wantErr: "the output is oci:DIR"},
		{name: "build --push REPO:TAG --key", args: []string{"build", R, "--push", "reg.example/acme/app:v1", "--key", "cosign.key"}, want: func(t *testing.T, a *app, j job) {
			b := buildOf(t, j)
			eq(t, "target", b.out, target{repo: "reg.example/acme/app", tag: "v1"})
			eq(t, "key", b.sign.key, "cosign.key")
		}},
		{name: "build --push REPO", args: []string{"build", R, "--push", "acme/app", "--no-sign"}, want: func(t *testing.T, a *app, j job) {
			b := buildOf(t, j)
			eq(t, "target", b.out, target{repo: "docker.io/acme/app", tag: "latest"})
			eq(t, "no-sign", b.sign.noSign, true)
		}},
		{name: "build --push needs a key", args: []string{"build", R, "--push", "reg.example/app"}, wantErr: "--key cosign.key"},
		{name: "build --push digest", args: []string{"build", R, "--push", "reg.example/app@" + dg, "--no-sign"}, wantErr: "not a digest"},
		{name: "build --push and --tag", args: []string{"build", R, "--push", "reg.example/app:v1", "--tag", "v2", "--no-sign"}, wantErr: "REPO:TAG"},
		{name: "build --push and --output", args: []string{"build", R, "--push", "reg.example/app", "--output", "oci:d", "--no-sign"}, wantErr: "not both"},
		{name: "build --key and --no-sign", args: []string{"build", R, "--key", "cosign.key", "--no-sign"}, wantErr: "contradict"},
		{name: "build signing flags", args: []string{"build", R, "--key", "cosign.key", "--signature-format", "bundle", "--builder-id", "https://ci.example/builder"}, want: func(t *testing.T, a *app, j job) {
			b := buildOf(t, j)
			eq(t, "formats", b.formats, sign.FormatBundle)
			eq(t, "builder id", b.sign.builderID, "https://ci.example/builder")
		}},
		{name: "build --signature-format all", args: []string{"build", R, "--key", "k", "--signature-format", "all"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "formats", buildOf(t, j).formats, sign.FormatAll)
		}},
		{name: "build bad --signature-format", args: []string{"build", R, "--signature-format", "x"}, wantErr: "--signature-format"},
		{name: "build --cache-to as documented", args: []string{"build", R, "--cache-to", "type=registry,ref=reg.example/app:buildcache,mode=max", "--cache-from", "type=registry,ref=reg.example/app:buildcache"}, want: func(t *testing.T, a *app, j job) {
			b := buildOf(t, j)
			eq(t, "exports", b.opts.CacheExports, []client.CacheOptionsEntry{cache("registry", "ref", "reg.example/app:buildcache", "mode", "max")})
			eq(t, "imports", b.opts.CacheImports, []client.CacheOptionsEntry{cache("registry", "ref", "reg.example/app:buildcache")})
		}},
		{name: "build --cache-from repeated, bare ref, quoted field", args: []string{"build", R, "--cache-from", "reg.example/app:c1", "--cache-from", "type=registry,ref=reg.example/app:c2", "--cache-to", `type=local,"dest=/tmp/a,b"`}, want: func(t *testing.T, a *app, j job) {
			b := buildOf(t, j)
			eq(t, "imports", b.opts.CacheImports, []client.CacheOptionsEntry{cache("registry", "ref", "reg.example/app:c1"), cache("registry", "ref", "reg.example/app:c2")})
			eq(t, "exports", b.opts.CacheExports, []client.CacheOptionsEntry{cache("local", "dest", "/tmp/a,b")})
		}},
		{name: "build --cache-to without type", args: []string{"build", R, "--cache-to", "ref=reg.example/app:c,mode=max"}, wantErr: "type= is required"},
		{name: "build --cache-to registry without ref", args: []string{"build", R, "--cache-to", "type=registry,mode=max"}, wantErr: "ref="},
		{name: "build --progress", args: []string{"build", R, "--progress", "plain"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "progress", buildOf(t, j).opts.ProgressMode, progressui.PlainMode)
		}},
		{name: "build bad --progress", args: []string{"build", R, "--progress", "fancy"}, wantErr: "--progress"},
		{name: "build --helper", args: []string{"build", R, "--helper", helper}, want: func(t *testing.T, a *app, j job) {
			eq(t, "helper", buildOf(t, j).opts.HelperPath, helper)
		}},
		{name: "build other flags", args: []string{"build", R, "--metadata-file", "meta.json", "--update-lock", "--timeout", "30m"}, want: func(t *testing.T, a *app, j job) {
			b := buildOf(t, j)
			eq(t, "metadata", b.metadataFile, "meta.json")
			eq(t, "update-lock", b.updateLock, true)
			eq(t, "timeout", b.timeout, 30*time.Minute)
		}},
		{name: "build --check", args: []string{"build", R, "--check"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "check", buildOf(t, j).check, true)
		}},
		{name: "build --check --push", args: []string{"build", R, "--check", "--push", "reg.example/app", "--no-sign"}, wantErr: "drop --push"},
		{name: "build connection", args: append([]string{"-v", "build", R}, connArgs...), want: func(t *testing.T, a *app, j job) {
			wantConn(t, a, buildOf(t, j).conn)
		}},
		{name: "build -q", args: []string{"-q", "build", R}, want: func(t *testing.T, a *app, j job) {}},

		// vmbuild track
		{name: "track defaults", args: []string{"track", R}, want: func(t *testing.T, a *app, j job) {
			tr := trackOf(t, j)
			eq(t, "recipe", tr.recipe, R)
			eq(t, "repo, dir", []string{tr.opts.Repo, tr.opts.OCIDir}, []string{"", ""})
			eq(t, "tags", tr.opts.Tags, []string{"edge", "sha-{short}"})
			eq(t, "build timeout", tr.opts.BuildTimeout, time.Hour)
			eq(t, "progress", tr.opts.Build.ProgressMode, progressui.QuietMode)
			if tr.opts.Logger == nil || tr.opts.Build.Logger == nil {
				t.Error("no logger")
			}
		}},
		{name: "track -o x", args: []string{"track", R, "-o", "x"}, wantErr: "--output oci:x"},
		{name: "track -o out/x", args: []string{"track", R, "-o", "out/x"}, wantErr: "--output oci:out/x"},
		{name: "track -o oci:out/x", args: []string{"track", R, "-o", "oci:out/x"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "dir", trackOf(t, j).opts.OCIDir, "out/x")
		}},
		{name: "track --output oci:DIR --key", args: []string{"track", R, "--output", "oci:out/x", "--key", "cosign.key"}, want: func(t *testing.T, a *app, j job) {
			tr := trackOf(t, j)
			eq(t, "dir, key", []string{tr.opts.OCIDir, tr.sign.key}, []string{"out/x", "cosign.key"})
		}},
		{name: "track --push REPO --key", args: []string{"track", R, "--push", "reg.example/acme/app", "--key", "cosign.key", "--signature-format", "all", "--builder-id", "https://ci.example/b"}, want: func(t *testing.T, a *app, j job) {
			tr := trackOf(t, j)
			eq(t, "repo", tr.opts.Repo, "reg.example/acme/app")
			eq(t, "formats", tr.formats, sign.FormatAll)
			eq(t, "builder id", tr.sign.builderID, "https://ci.example/b")
		}},
		{name: "track --push REPO:TAG", args: []string{"track", R, "--push", "reg.example/app:v1", "--key", "k"}, wantErr: "the tags are --tag"},
		{name: "track --push without key", args: []string{"track", R, "--push", "reg.example/app"}, wantErr: "--key cosign.key"},
		{name: "track --push --no-sign", args: []string{"track", R, "--push", "reg.example/app", "--no-sign"}, wantErr: "signed images only"},
		{name: "track --no-sign to a layout", args: []string{"track", R, "--no-sign"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "no-sign", trackOf(t, j).sign.noSign, true)
		}},
		{name: "track --cache-to as documented", args: []string{"track", R, "--cache-to", "type=registry,ref=reg.example/app:buildcache,mode=max", "--cache-from", "type=registry,ref=reg.example/app:buildcache"}, want: func(t *testing.T, a *app, j job) {
			tr := trackOf(t, j)
			eq(t, "exports", tr.opts.Build.CacheExports, []client.CacheOptionsEntry{cache("registry", "ref", "reg.example/app:buildcache", "mode", "max")})
			eq(t, "imports", tr.opts.Build.CacheImports, []client.CacheOptionsEntry{cache("registry", "ref", "reg.example/app:buildcache")})
		}},
		{name: "track --cache-to without type", args: []string{"track", R, "--cache-to", "ref=reg.example/app:c"}, wantErr: "type= is required"},
		{name: "track pass flags", args: []string{"track", R, "--ref", "release", "--once", "--max-commits", "3", "--tag", "edge", "--tag", "sha-{short},c-{commit}", "--build-timeout", "30m", "--wait", "--retry-failed", "--progress", "plain", "--helper", helper}, want: func(t *testing.T, a *app, j job) {
			tr := trackOf(t, j)
			eq(t, "ref", tr.opts.Ref, "release")
			eq(t, "max commits", tr.opts.MaxCommits, 3)
			eq(t, "tags", tr.opts.Tags, []string{"edge", "sha-{short}", "c-{commit}"})
			eq(t, "build timeout", tr.opts.BuildTimeout, 30*time.Minute)
			eq(t, "wait, retry", []bool{tr.opts.Wait, tr.opts.RetryFailed}, []bool{true, true})
			eq(t, "progress", tr.opts.Build.ProgressMode, progressui.PlainMode)
			eq(t, "helper", tr.opts.Build.HelperPath, helper)
			eq(t, "interval", tr.interval, time.Duration(0))
		}},
		{name: "track --interval --head-only", args: []string{"track", R, "--interval", "10m", "--head-only"}, want: func(t *testing.T, a *app, j job) {
			tr := trackOf(t, j)
			eq(t, "interval", tr.interval, 10*time.Minute)
			eq(t, "head only", tr.opts.HeadOnly, true)
		}},
		{name: "track --once --interval", args: []string{"track", R, "--once", "--interval", "1m"}, wantErr: "not both"},
		{name: "track --head-only --max-commits", args: []string{"track", R, "--head-only", "--max-commits", "2"}, wantErr: "not both"},
		{name: "track --report --format html", args: []string{"track", R, "--report", "--format", "html"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "job", j, job(&trackReportJob{recipe: R, format: "html"}))
		}},
		{name: "track --report", args: []string{"track", R, "--report"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "job", j, job(&trackReportJob{recipe: R, format: "md"}))
		}},
		{name: "track --report --format pdf", args: []string{"track", R, "--report", "--format", "pdf"}, wantErr: "md or html"},
		{name: "track connection", args: append([]string{"track", R}, connArgs...), want: func(t *testing.T, a *app, j job) {
			wantConn(t, a, trackOf(t, j).conn)
		}},

		// vmbuild patch check|export
		{name: "patch check --range -o json", args: []string{"patch", "check", R, "--range", "v1.0..main", "-o", "json", "--progress", "plain", "--helper", helper}, want: func(t *testing.T, a *app, j job) {
			p, ok := j.(*patchCheckJob)
			if !ok {
				t.Fatalf("job %T", j)
			}
			eq(t, "range, json", []any{p.recipe, p.rng, p.json}, []any{R, "v1.0..main", true})
			eq(t, "progress", p.opts.ProgressMode, progressui.PlainMode)
			eq(t, "helper", p.opts.HelperPath, helper)
		}},
		{name: "patch check --last", args: []string{"patch", "check", R, "--last", "20", "--output", "text"}, want: func(t *testing.T, a *app, j job) {
			p := j.(*patchCheckJob)
			eq(t, "last, json", []any{p.last, p.json}, []any{20, false})
			eq(t, "progress", p.opts.ProgressMode, progressui.QuietMode)
		}},
		{name: "patch check --range --last", args: []string{"patch", "check", R, "--range", "a..b", "--last", "3"}, wantErr: "not both"},
		{name: "patch check -o yaml", args: []string{"patch", "check", R, "-o", "yaml"}, wantErr: "text or json"},
		{name: "patch check connection", args: append([]string{"patch", "check", R}, connArgs...), want: func(t *testing.T, a *app, j job) {
			wantConn(t, a, j.(*patchCheckJob).conn)
		}},
		{name: "patch export --to --diff --upstream", args: []string{"patch", "export", R, "--to", "tree", "--diff", "--upstream", "--progress", "plain", "--helper", helper}, want: func(t *testing.T, a *app, j job) {
			p := j.(*patchExportJob)
			eq(t, "export", []any{p.recipe, p.to, p.diff, p.upstream, p.opts.HelperPath}, []any{R, "tree", true, true, helper})
		}},
		{name: "patch export nothing", args: []string{"patch", "export", R}, wantErr: "--to DIR, --diff"},
		{name: "patch export connection", args: append([]string{"patch", "export", R, "--diff"}, connArgs...), want: func(t *testing.T, a *app, j job) {
			wantConn(t, a, j.(*patchExportJob).conn)
		}},

		// vmbuild lock
		{name: "lock", args: []string{"lock", R, "--update", "--commit", "abc123", "--insecure-registry", "reg.local:5000"}, want: func(t *testing.T, a *app, j job) {
			l := j.(*lockJob)
			eq(t, "lock", []any{l.recipe, l.opts.Update, l.opts.Commit, l.insecure}, []any{R, true, "abc123", []string{"reg.local:5000"}})
		}},

		// vmbuild verify
		{name: "verify", args: []string{"verify", "reg.example/app@" + dg, "--key", "a.pub", "--key", "b.pub", "--policy", "policy.yaml", "-o", "json", "--timeout", "1m", "--insecure-registry", "reg.example"}, want: func(t *testing.T, a *app, j job) {
			v := j.(*verifyJob)
			eq(t, "image", v.image.String(), "reg.example/app@"+dg)
			eq(t, "verify", []any{v.keys, v.policy, v.json, v.timeout, v.insecure}, []any{[]string{"a.pub", "b.pub"}, "policy.yaml", true, time.Minute, []string{"reg.example"}})
		}},
		{name: "verify layout --no-policy", args: []string{"verify", "oci:out/app@" + dg, "--key", "k.pub", "--no-policy", "--output", "text"}, want: func(t *testing.T, a *app, j job) {
			v := j.(*verifyJob)
			eq(t, "layout, policy, json", []any{v.image.Layout, v.policy, v.json}, []any{"out/app", "", false})
		}},
		{name: "verify --resolve", args: []string{"verify", "reg.example/app:v1", "--resolve", "--key", "k.pub", "--no-policy"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "tag", j.(*verifyJob).image.Tag, "v1")
		}},
		{name: "verify tag", args: []string{"verify", "reg.example/app:v1", "--key", "k.pub", "--no-policy"}, wantErr: "--resolve"},
		{name: "verify no key", args: []string{"verify", "reg.example/app@" + dg, "--no-policy"}, wantErr: "--key cosign.pub is required"},
		{name: "verify no policy", args: []string{"verify", "reg.example/app@" + dg, "--key", "k.pub"}, wantErr: "a policy is required"},
		{name: "verify both policies", args: []string{"verify", "reg.example/app@" + dg, "--key", "k.pub", "--policy", "p.yaml", "--no-policy"}, wantErr: "contradict"},

		// vmbuild provenance
		{name: "provenance", args: []string{"provenance", "reg.example/app@" + dg, "--key", "cosign.pub", "-o", "json", "--insecure-registry", "reg.example"}, want: func(t *testing.T, a *app, j job) {
			p := j.(*provenanceJob)
			eq(t, "provenance", []any{p.image.String(), p.key, p.json, p.insecure}, []any{"reg.example/app@" + dg, "cosign.pub", true, []string{"reg.example"}})
		}},
		{name: "provenance layout tag --resolve", args: []string{"provenance", "oci:out/app:v1", "--key", "cosign.pub", "--resolve", "--output", "text"}, want: func(t *testing.T, a *app, j job) {
			p := j.(*provenanceJob)
			eq(t, "layout, tag", []string{p.image.Layout, p.image.Tag}, []string{"out/app", "v1"})
		}},
		{name: "provenance tag", args: []string{"provenance", "reg.example/app:v1", "--key", "cosign.pub"}, wantErr: "--resolve"},
		{name: "provenance no key", args: []string{"provenance", "reg.example/app@" + dg}, wantErr: "--key cosign.pub is required"},

		// vmbuild keygen, daemon
		{name: "keygen", args: []string{"keygen", "--output-key-prefix", "ci", "--force"}, want: func(t *testing.T, a *app, j job) {
			eq(t, "keygen", j, job(&keygenJob{prefix: "ci", force: true}))
		}},
		{name: "daemon status --json", args: append([]string{"daemon", "status", "--json"}, connArgs...), want: func(t *testing.T, a *app, j job) {
			d := j.(*daemonJob)
			eq(t, "daemon", []any{d.action, d.json, d.opts.StateDir, d.opts.Binary, d.opts.InsecureRegistries}, []any{"status", true, "/var/lib/vmb", "/opt/buildkitd", []string{"reg.local:5000", "other.local:5000", "third.local:5000"}})
		}},
		{name: "daemon start", args: append([]string{"daemon", "start"}, connArgs...), want: func(t *testing.T, a *app, j job) {
			eq(t, "action", j.(*daemonJob).action, "start")
		}},
		{name: "daemon stop", args: append([]string{"daemon", "stop"}, connArgs...), want: func(t *testing.T, a *app, j job) {
			eq(t, "action", j.(*daemonJob).action, "stop")
		}},
	}
}

// TestFlags: every case, and every flag of every command is in a case.
func TestFlags(t *testing.T) {
	t.Setenv("BUILDKIT_HOST", "")
	t.Setenv("VMBUILD_STATE_DIR", "")
	t.Setenv("VMBUILD_BUILDKITD", "")
	seen := map[string]bool{}
	for _, c := range flagCases(t) {
		t.Run(c.name, func(t *testing.T) {
			a, root, j, err := parsed(t, c.args)
			if cmd, _, ferr := root.Find(c.args); ferr == nil {
				cmd.Flags().Visit(func(f *pflag.Flag) { seen[flagKey(cmd, f)] = true })
			}
			if c.wantErr != "" {
				if !errors.Is(err, errs.ErrUsage) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want a usage error with %q", err, c.wantErr)
				}
				if j != nil {
					t.Fatalf("a refused command line ran %T", j)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if j == nil {
				t.Fatal("no job")
			}
			c.want(t, a, j)
			if g := c.args[0]; g == "-v" || g == "-q" {
				eq(t, "verbose, quiet", []bool{a.verbose, a.quiet}, []bool{g == "-v", g == "-q"})
			}
		})
	}
	// Every flag a command documents in its help is exercised above.
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		if c.Runnable() {
			c.Flags().VisitAll(func(f *pflag.Flag) {
				if f.Name == "help" || f.Name == "version" {
					return
				}
				if !seen[flagKey(c, f)] {
					t.Errorf("%s --%s: no test with the documented syntax", c.CommandPath(), f.Name)
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	_, root, _, _ := parsed(t, []string{"version"})
	for _, c := range root.Commands() {
		// Flags are merged from the parents as a command runs; merge them
		// all here.
		c.ParseFlags(nil)
		for _, sub := range c.Commands() {
			sub.ParseFlags(nil)
		}
	}
	walk(root)
}

// flagKey names a flag of a command; the root's global flags once.
func flagKey(c *cobra.Command, f *pflag.Flag) string {
	if c.Root().PersistentFlags().Lookup(f.Name) == f {
		return "vmbuild --" + f.Name
	}
	return c.CommandPath() + " --" + f.Name
}

// TestRemoteTextEscaped: provenance fields and error messages, which may
// quote a registry or an attestation, reach the terminal escaped.
func TestRemoteTextEscaped(t *testing.T) {
	var b strings.Builder
	in := &provenance.Info{BuilderID: "evil\x1b[2J\u202e", InvocationID: "x\ny"}
	in.Upstream.URL = "https://example.com/\x1b]0;title\x07"
	printProvenance(&b, verify.Target{Repository: "reg.example/app", Digest: dg}, in)
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07\u202e") || !strings.Contains(out, `evil\x1b[2J\u202e`) || !strings.Contains(out, `x\x0ay`) {
		t.Errorf("not escaped:\n%s", out)
	}
	if got := safeLines("publishing: \x1b[31mred\n  published: x"); got != `publishing: \x1b[31mred`+"\n  published: x" {
		t.Errorf("safeLines: %q", got)
	}
}
