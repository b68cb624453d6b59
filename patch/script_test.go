package patch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmbuild/vmbuild/errs"
)

// mastodonScript is the hiredis removal script from Mastodon 4.1.2.
const mastodonScript = `sed -i '/gem '\''hiredis'\'', '\''~> 0.6'\''/d' ./Gemfile
sed -i '/hiredis/d' ./Gemfile.lock
sed -i '/hiredis/d' ./lib/mastodon/redis_config.rb
sed -i '/hiredis/d' ./lib/tasks/mastodon.rake
sed -i 's/, driver: :hiredis//g' ./app/lib/redis_configuration.rb
sed -i 's/, require: \['\''redis'\'', '\''redis\/connection\/hiredis'\''\]//' ./Gemfile
`

// A synthetic tree with the Mastodon 4.1.2 layout (excerpts).
var mastodon412 = files{
	"Gemfile": `gem 'pg', '~> 1.4'
gem 'makara', '~> 0.5'
gem 'pghero'
gem 'dotenv-rails', '~> 2.8'
gem 'hiredis', '~> 0.6'
gem 'redis', '~> 4.5', require: ['redis', 'redis/connection/hiredis']
gem 'redis-namespace', '~> 1.10'
`,
	"Gemfile.lock": `    highline (2.0.3)
    hiredis (0.6.3)
    hkdf (0.3.0)
  hiredis (~> 0.6)
  redis (~> 4.5)
`,
	"lib/mastodon/redis_config.rb": `REDIS_CACHE_PARAMS = {
  driver: :hiredis,
  url: ENV['CACHE_REDIS_URL'],
  expires_in: 10.minutes,
}.freeze
`,
	"lib/tasks/mastodon.rake": `      redis = Redis.new(host: env['REDIS_HOST'], port: env['REDIS_PORT'], password: env['REDIS_PASSWORD'], driver: :hiredis)
      redis.ping
`,
	"app/lib/redis_configuration.rb": `  def raw_connection
    Redis.new(url: url, driver: :hiredis)
  end
`,
	"README.md": "# Mastodon\n",
	".git/HEAD": "ref: refs/heads/main\n",
}

var mastodon412After = files{
	"Gemfile": `gem 'pg', '~> 1.4'
gem 'makara', '~> 0.5'
gem 'pghero'
gem 'dotenv-rails', '~> 2.8'
gem 'redis', '~> 4.5'
gem 'redis-namespace', '~> 1.10'
`,
	"Gemfile.lock": `    highline (2.0.3)
    hkdf (0.3.0)
  redis (~> 4.5)
`,
	"lib/mastodon/redis_config.rb": `REDIS_CACHE_PARAMS = {
  url: ENV['CACHE_REDIS_URL'],
  expires_in: 10.minutes,
}.freeze
`,
	"lib/tasks/mastodon.rake": `      redis.ping
`,
	"app/lib/redis_configuration.rb": `  def raw_connection
    Redis.new(url: url)
  end
`,
	"README.md": "# Mastodon\n",
	".git/HEAD": "ref: refs/heads/main\n",
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hiredis.sh")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func shells(t *testing.T) []string {
	var out []string
	for _, sh := range []string{"/bin/sh", "/usr/bin/dash", "/bin/busybox", "/usr/bin/busybox", "/bin/bash"} {
		if _, err := os.Stat(sh); err == nil {
			out = append(out, sh)
		}
	}
	if len(out) == 0 {
		t.Skip("no shell")
	}
	return out
}

// busybox needs "sh" as its first argument; wrap it.
func shellFor(t *testing.T, sh string) string {
	if filepath.Base(sh) != "busybox" {
		return sh
	}
	w := filepath.Join(t.TempDir(), "busybox-sh")
	if err := os.WriteFile(w, []byte("#!"+sh+" sh\nexec "+sh+" sh \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRunScriptMastodon(t *testing.T) {
	for _, sh := range shells(t) {
		t.Run(strings.ReplaceAll(sh, "/", "_"), func(t *testing.T) {
			shell := shellFor(t, sh)
			t.Run("4.1.2 layout applies", func(t *testing.T) {
				dir := t.TempDir()
				writeTree(t, dir, mastodon412)
				var out bytes.Buffer
				r, err := RunScript(context.Background(), dir, writeScript(t, mastodonScript), WithShell(shell), WithOutput(&out))
				if err != nil {
					t.Fatal(err)
				}
				if r.Status != StatusApplied || r.Kind != KindScript || r.Patch != "hiredis.sh" || r.Err("c") != nil {
					t.Fatalf("report %+v %+v\noutput:\n%s", r, r.Failure, out.String())
				}
				assertTree(t, dir, mastodon412After)
				want := []FileStat{
					{Path: "Gemfile", Op: OpModified, Added: 1, Removed: 2},
					{Path: "Gemfile.lock", Op: OpModified, Removed: 2},
					{Path: "app/lib/redis_configuration.rb", Op: OpModified, Added: 1, Removed: 1},
					{Path: "lib/mastodon/redis_config.rb", Op: OpModified, Removed: 1},
					{Path: "lib/tasks/mastodon.rake", Op: OpModified, Removed: 1},
				}
				if !reflect.DeepEqual(r.Files, want) {
					t.Errorf("files %+v\nwant %+v", r.Files, want)
				}
				if r.Summary() != "5 files, +2 -7" {
					t.Errorf("summary %q", r.Summary())
				}
				if !strings.Contains(out.String(), "+ sed -i ") {
					t.Errorf("output copy has no trace: %q", out.String())
				}
			})
			t.Run("main layout fails naming the command", func(t *testing.T) {
				dir := t.TempDir()
				main := copyFiles(mastodon412)
				delete(main, "lib/mastodon/redis_config.rb")
				delete(main, "app/lib/redis_configuration.rb")
				writeTree(t, dir, main)
				r, err := RunScript(context.Background(), dir, writeScript(t, mastodonScript), WithShell(shell))
				if err != nil {
					t.Fatal(err)
				}
				f := r.Failure
				if r.Status != StatusFailed || f == nil || f.Reason != ReasonScript {
					t.Fatalf("report %+v", r)
				}
				const cmd = `sed -i '/hiredis/d' ./lib/mastodon/redis_config.rb`
				if f.Command != cmd || f.ExitCode == 0 {
					t.Errorf("command %q exit %d", f.Command, f.ExitCode)
				}
				if !strings.Contains(f.Output, "lib/mastodon/redis_config.rb: No such file or directory") {
					t.Errorf("output %q", f.Output)
				}
				err = r.Err("2f40549d")
				wantPrefix := `script "hiredis.sh" failed at commit 2f40549d: command "sed -i '/hiredis/d' ./lib/mastodon/redis_config.rb" exited `
				if err == nil || !strings.HasPrefix(err.Error(), wantPrefix) || !strings.HasSuffix(err.Error(), "./lib/mastodon/redis_config.rb: No such file or directory") {
					t.Errorf("Err = %v", err)
				}
				if !errors.Is(err, errs.ErrPatchFailed) {
					t.Errorf("Err does not wrap ErrPatchFailed")
				}
			})
		})
	}
}

func TestRunScriptCases(t *testing.T) {
	tree := files{"a.txt": "one\ntwo\n", "b.txt": "bee\n", "bin/tool": "#!/bin/sh\n", ".git/config": "[core]\n"}
	tests := []struct {
		name   string
		script string
		opts   []Option
		status Status
		reason Reason
		files  []FileStat
		check  func(t *testing.T, r *Report)
	}{
		{"no-op", "grep -q one a.txt\n", nil, StatusNoop, ReasonNoop, nil, func(t *testing.T, r *Report) {
			if r.Failure.Message != "patch p.sh made no change" {
				t.Errorf("message %q", r.Failure.Message)
			}
		}},
		{"optional no-op", "true\n", []Option{WithOptional(true)}, StatusNoop, "", nil, nil},
		{"touching .git is ignored", "echo x >> .git/config\n", nil, StatusNoop, ReasonNoop, nil, nil},
		{"add, delete, rename, mode", "printf 'n1\\nn2\\n' > new.txt\nrm b.txt\nmv a.txt c.txt\nchmod +x bin/tool\nmkdir -p d && echo z > d/z\n", nil, StatusApplied, "",
			[]FileStat{
				{Path: "b.txt", Op: OpDeleted, Removed: 1},
				{Path: "bin/tool", Op: OpMode},
				{Path: "c.txt", OldPath: "a.txt", Op: OpRenamed},
				{Path: "d/z", Op: OpAdded, Added: 1},
				{Path: "new.txt", Op: OpAdded, Added: 2},
			}, nil},
		{"exit code and output", "echo starting\nfor i in 1 2; do echo \"$i\"; done\nsh -c 'echo boom >&2; exit 3'\necho never\n", nil, StatusFailed, ReasonScript, nil, func(t *testing.T, r *Report) {
			f := r.Failure
			if f.ExitCode != 3 || f.Command != "sh -c 'echo boom >&2; exit 3'" || !strings.HasSuffix(f.Message, ": boom") {
				t.Errorf("failure %+v", f)
			}
			if strings.Contains(f.Output, "never") || !strings.Contains(f.Output, "starting") {
				t.Errorf("output %q", f.Output)
			}
		}},
		{"minimal environment", "test \"$HOME\" = /tmp\ntest \"$LC_ALL\" = C\ntest -z \"$VMBUILD_TEST_SECRET\"\necho ok > env.txt\n", nil, StatusApplied, "", []FileStat{{Path: "env.txt", Op: OpAdded, Added: 1}}, nil},
		{"long output is cut to the last lines", "i=0\nwhile [ $i -lt 100 ]; do echo \"line $i\"; i=$((i+1)); done\nfalse\n", nil, StatusFailed, ReasonScript, nil, func(t *testing.T, r *Report) {
			lines := strings.Split(r.Failure.Output, "\n")
			if len(lines) != outputTailLines || lines[len(lines)-1] != "+ false" {
				t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
			}
			if r.Failure.Command != "false" {
				t.Errorf("command %q", r.Failure.Command)
			}
		}},
		{"command substitution", "x=$(cat missing-file)\n", nil, StatusFailed, ReasonScript, nil, func(t *testing.T, r *Report) {
			if r.Failure.Command == "" || !strings.Contains(r.Failure.Message, "missing-file") {
				t.Errorf("failure %+v", r.Failure)
			}
		}},
	}
	t.Setenv("VMBUILD_TEST_SECRET", "leak")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tree)
			p := filepath.Join(t.TempDir(), "p.sh")
			if err := os.WriteFile(p, []byte(tt.script), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := RunScript(context.Background(), dir, p, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tt.status {
				t.Fatalf("status %s, want %s: %+v", r.Status, tt.status, r.Failure)
			}
			if tt.reason == "" && r.Failure != nil || tt.reason != "" && (r.Failure == nil || r.Failure.Reason != tt.reason) {
				t.Fatalf("failure %+v, want reason %q", r.Failure, tt.reason)
			}
			if tt.files != nil && !reflect.DeepEqual(r.Files, tt.files) {
				t.Errorf("files %+v\nwant %+v", r.Files, tt.files)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestRunScriptBadShell(t *testing.T) {
	dir := t.TempDir()
	r, err := RunScript(context.Background(), dir, writeScript(t, "true\n"), WithShell("/nonexistent/sh"), WithName("x.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusFailed || r.Failure.Reason != ReasonScript || !strings.Contains(r.Failure.Message, "/nonexistent/sh") || r.Patch != "x.sh" {
		t.Errorf("report %+v %+v", r, r.Failure)
	}
}

func TestSourceLine(t *testing.T) {
	src := []byte(mastodonScript)
	tests := map[string]string{
		// dash traces after quote removal
		`sed -i /gem 'hiredis', '~> 0.6'/d ./Gemfile`:                               `sed -i '/gem '\''hiredis'\'', '\''~> 0.6'\''/d' ./Gemfile`,
		`sed -i s/, require: \['redis', 'redis\/connection\/hiredis'\]// ./Gemfile`: `sed -i 's/, require: \['\''redis'\'', '\''redis\/connection\/hiredis'\''\]//' ./Gemfile`,
		`sed -i s/, driver: :hiredis//g ./app/lib/redis_configuration.rb`:           `sed -i 's/, driver: :hiredis//g' ./app/lib/redis_configuration.rb`,
		// bash and busybox re-quote
		`sed -i '/gem '"'"'hiredis'"'"', '"'"'~> 0.6'"'"'/d' ./Gemfile`: `sed -i '/gem '\''hiredis'\'', '\''~> 0.6'\''/d' ./Gemfile`,
		`sed -i /hiredis/d ./lib/tasks/mastodon.rake`:                   `sed -i '/hiredis/d' ./lib/tasks/mastodon.rake`,
		`echo not in the script`:                                        `echo not in the script`,
	}
	for traced, want := range tests {
		if got := sourceLine(traced, src); got != want {
			t.Errorf("sourceLine(%q) = %q, want %q", traced, got, want)
		}
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
}
