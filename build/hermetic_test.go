package build

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bk "github.com/moby/buildkit/client/llb"
	digest "github.com/opencontainers/go-digest"

	vmllb "github.com/vmbuild/vmbuild/llb"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/recipe"
)

func defOf(t *testing.T, st bk.State) []Access {
	t.Helper()
	def, err := st.Marshal(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	acc, err := nonHermetic(def.ToPB())
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// TestNonHermeticOps: which LLB ops reach beyond the pins.
func TestNonHermeticOps(t *testing.T) {
	commit := strings.Repeat("ab", 20)
	pinned := bk.Scratch().
		File(bk.Copy(bk.HTTP("https://example.com/pinned.tgz", bk.Checksum(digest.FromString("x"))), "/", "/a")).
		File(bk.Copy(bk.Git("https://github.com/acme/app.git", commit), "/", "/b")).
		File(bk.Copy(bk.Git("https://github.com/acme/lib.git", "v1", bk.GitChecksum(commit)), "/", "/c")).
		File(bk.Copy(bk.Image("docker.io/library/busybox:1.36"), "/", "/d")).
		File(bk.Copy(bk.Local("context"), "/", "/e"))
	none := pinned.Run(bk.Args([]string{"true"}), bk.Network(bk.NetModeNone)).Root()
	if got := defOf(t, none); got == nil || len(got) != 0 {
		t.Fatalf("pinned sources and a step without network: %+v", got)
	}

	open := none.
		File(bk.Copy(bk.HTTP("https://u:secret@example.com/tool.tgz?token=secret#x"), "/", "/f")).
		File(bk.Copy(bk.Git("https://github.com/acme/tool.git", "main"), "/", "/g")).
		Run(bk.Args([]string{"sh", "-c", "curl https://u:hunter2@example.com/x"}), bk.WithCustomName("[stage 2/3] RUN curl https://u:hunter2@example.com/x?token=secret\n  && make")).
		Run(bk.Args([]string{"true"}), bk.Network(bk.NetModeHost)).Root()
	got := defOf(t, open)
	want := []Access{
		{Kind: AccessGit, URL: "https://github.com/acme/tool.git"},
		{Kind: AccessHTTP, URL: "https://example.com/tool.tgz"},
		{Kind: AccessNetwork, Step: "[stage 2/3] RUN curl https://example.com/x… && make", Network: NetworkSandbox},
		{Kind: AccessNetwork, Step: "true", Network: NetworkHost},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("nonHermetic =\n%+v\nwant\n%+v", got, want)
	}
	for _, s := range []string{"secret", "hunter2"} {
		for _, a := range got {
			if strings.Contains(a.Step+a.URL, s) {
				t.Errorf("%q recorded: %+v", s, a)
			}
		}
	}
	if n := stepName(strings.Repeat("é", 300)); len(n) > maxStepName+len("…") || !strings.HasSuffix(n, "…") || !strings.HasPrefix(n, "éé") {
		t.Errorf("long step name: %q", n)
	}
}

// TestNonHermeticNative: a native layer with `network: host` is a
// networked step; without it the native graph is hermetic.
func TestNonHermeticNative(t *testing.T) {
	const body = `apiVersion: vmbuild/v1
name: demo
upstream: {git: "git://127.0.0.1:9418/demo.git", ref: main}
base: registry.local:5000/busybox:1
platform: linux/amd64
patches:
  - script: edit.sh
build:
  layers:
    - name: bundle
      inputs: [Gemfile]
      run: bundle install
      outputs: [/usr/local/bundle]
      network: host
    - name: assets
      run: yarn build
      outputs: [/app/public]
`
	graph := func(body string) *vmllb.Graph {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "edit.sh"), []byte("true\n"), 0o644)
		p := filepath.Join(dir, "demo.yaml")
		os.WriteFile(p, []byte(body), 0o644)
		r, err := recipe.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		l := lock.Skeleton(r)
		l.Upstream.Commit, l.Upstream.CommitTime = strings.Repeat("ab", 20), time.Unix(1700000000, 0).UTC()
		l.Base = &lock.ImagePin{Ref: "registry.local:5000/busybox:1", Digest: "sha256:" + strings.Repeat("1", 64)}
		g, err := vmllb.Build(r, l, vmllb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	got := defOf(t, graph(body).Image)
	want := []Access{{Kind: AccessNetwork, Step: "[vmbuild] layer bundle: bundle install", Network: NetworkHost}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("nonHermetic = %+v, want %+v", got, want)
	}
	if got := defOf(t, graph(strings.Replace(body, "      network: host\n", "", 1)).Image); got == nil || len(got) != 0 {
		t.Fatalf("without network: host: %+v", got)
	}
}
