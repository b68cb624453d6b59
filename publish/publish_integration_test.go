package publish_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/build"
	"github.com/vmbuild/vmbuild/deps"
	"github.com/vmbuild/vmbuild/errs"
	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/lock"
	"github.com/vmbuild/vmbuild/publish"
	"github.com/vmbuild/vmbuild/recipe"
	"github.com/vmbuild/vmbuild/registry"
	"github.com/vmbuild/vmbuild/sign"
	"github.com/vmbuild/vmbuild/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// An empty trusted root: stock cosign v2 needs one to read the bundle
// format offline (online it fetches the public one).
const trustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

type env struct {
	*fixture.Env
	work   string
	signer *sign.Signer
	opts   build.Options
}

func start(t *testing.T) *env {
	t.Helper()
	testenv.RequireIntegration(t, "cosign", "cosign3")
	e := &env{Env: fixture.Start(t), work: t.TempDir()}
	for _, name := range []string{"vmbuild", "other"} {
		priv, pub, err := sign.GenerateKeyPair([]byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(e.work, name+".key"), priv, 0o600)
		os.WriteFile(filepath.Join(e.work, name+".pub"), pub, 0o644)
		if name == "vmbuild" {
			if e.signer, err = sign.LoadPrivateKey(priv, []byte("pw")); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.WriteFile(filepath.Join(e.work, "trusted_root.json"), []byte(trustedRoot), 0o644)
	c := e.Connect(t, "")
	e.opts = build.Options{Client: c.Client, HelperPath: e.Helper, BuildKitVersion: c.Version}
	return e
}

func (e *env) cosign(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Bin(t, bin), args...)
	cmd.Dir = e.work
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=pw", "TUF_ROOT="+filepath.Join(e.work, "tuf"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func remoteArgs(verb, key, ref string, extra ...string) []string {
	a := []string{verb, "--key", key, "--insecure-ignore-tlog", "--allow-insecure-registry", "--allow-http-registry"}
	if verb == "verify-attestation" {
		a = append(a, "--type", "slsaprovenance1")
	}
	return append(append(a, extra...), ref)
}

func layoutArgs(verb, key, dir string) []string {
	a := []string{verb, "--key", key, "--insecure-ignore-tlog"}
	if verb == "verify-attestation" {
		a = append(a, "--type", "slsaprovenance1")
	}
	return append(a, "--local-image", dir)
}

// TestStockCosignVerifies: stock cosign (v2 and v3) accepts what vmbuild
// publishes, on a registry and in an OCI layout, and refuses another key.
func TestStockCosignVerifies(t *testing.T) {
	e := start(t)
	up := e.NewUpstream(t, "interop")
	path := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	r, l := e.Lock(t, path, lock.Options{})
	ctx := context.Background()
	repo := e.Reg.Ref("interop")

	o := e.opts
	o.Output = build.Output{PushRepo: repo}
	res, err := build.Build(ctx, r, l, o)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := pushTo(t, e.Registry(), repo, []string{"latest", "sha-" + l.ShortCommit()}, r, l, res, publish.Options{Signer: e.signer})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tags) != 2 {
		t.Fatalf("tags %v", rep.Tags)
	}
	ref := repo + "@" + res.Digest.String()
	// The default publication: the standard offline key-based commands of
	// both cosign v2 and v3, as they are (#15.9).
	for _, bin := range []string{"cosign", "cosign3"} {
		for _, verb := range []string{"verify", "verify-attestation"} {
			if out, err := e.cosign(t, bin, remoteArgs(verb, "vmbuild.pub", ref)...); err != nil {
				t.Errorf("%s %s (default format): %v\n%s", bin, verb, err, out)
			}
			if out, err := e.cosign(t, bin, remoteArgs(verb, "other.pub", ref)...); err == nil {
				t.Errorf("%s %s accepted another key:\n%s", bin, verb, out)
			}
		}
	}
	// The provenance names the commit and the patches.
	out, err := e.cosign(t, "cosign3", remoteArgs("verify-attestation", "vmbuild.pub", ref)...)
	if err != nil || !strings.Contains(out, "payload") {
		t.Fatalf("%v %s", err, out)
	}
	if !bytes.Contains(rep.Statement, []byte(l.Upstream.Commit)) || !bytes.Contains(rep.Statement, []byte(r.Patches[0].SHA256)) {
		t.Errorf("statement lacks commit or patch digest: %s", rep.Statement)
	}

	// Both formats (the bundle format stays available): cosign v3 as is,
	// cosign v2 with a trusted root (why this is not the default).
	allRepo := e.Reg.Ref("interop-all")
	o.Output = build.Output{PushRepo: allRepo}
	ares, err := build.Build(ctx, r, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pushTo(t, e.Registry(), allRepo, []string{"latest"}, r, l, ares, publish.Options{Signer: e.signer, Formats: sign.FormatAll}); err != nil {
		t.Fatal(err)
	}
	allRef := allRepo + "@" + ares.Digest.String()
	for _, c := range []struct {
		bin   string
		extra []string
	}{{"cosign3", nil}, {"cosign", []string{"--trusted-root", "trusted_root.json"}}} {
		for _, verb := range []string{"verify", "verify-attestation"} {
			if out, err := e.cosign(t, c.bin, remoteArgs(verb, "vmbuild.pub", allRef, c.extra...)...); err != nil {
				t.Errorf("%s %s (all formats): %v\n%s", c.bin, verb, err, out)
			}
			if out, err := e.cosign(t, c.bin, remoteArgs(verb, "other.pub", allRef, c.extra...)...); err == nil {
				t.Errorf("%s %s accepted another key:\n%s", c.bin, verb, out)
			}
		}
	}

	// OCI layout.
	dir := filepath.Join(t.TempDir(), "oci")
	o.Output = build.Output{OCIDir: dir}
	ores, err := build.Build(ctx, r, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if ores.Digest != res.Digest {
		t.Errorf("layout digest %s != pushed %s", ores.Digest, res.Digest)
	}
	if _, err := publishLayout(t, dir, r, l, ores, publish.Options{Signer: e.signer}); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"cosign", "cosign3"} {
		for _, verb := range []string{"verify", "verify-attestation"} {
			if out, err := e.cosign(t, bin, layoutArgs(verb, "vmbuild.pub", dir)...); err != nil {
				t.Errorf("%s %s --local-image: %v\n%s", bin, verb, err, out)
			}
			if out, err := e.cosign(t, bin, layoutArgs(verb, "other.pub", dir)...); err == nil {
				t.Errorf("%s %s --local-image accepted another key:\n%s", bin, verb, out)
			}
		}
	}
}

// TestFailureBetweenPushAndSign: the registry refuses the signature
// manifest. No tag exists afterwards, the error says what was published,
// and running publish again completes without duplicate signatures.
func TestFailureBetweenPushAndSign(t *testing.T) {
	e := start(t)
	up := e.NewUpstream(t, "fail")
	path := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	r, l := e.Lock(t, path, lock.Options{})
	ctx := context.Background()

	var refuse atomic.Bool
	refuse.Store(true)
	target, _ := url.Parse("http://" + e.Reg.Host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if refuse.Load() && req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, ".sig") {
			http.Error(w, `{"errors":[{"code":"DENIED","message":"signatures are not accepted today"}]}`, http.StatusForbidden)
			return
		}
		proxy.ServeHTTP(w, req)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	repo := host + "/fail"
	o := e.opts
	o.Output = build.Output{PushRepo: repo}
	res, err := build.Build(ctx, r, l, o)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.WithRetry(1, time.Millisecond))
	popts := publish.Options{Signer: e.signer, Formats: sign.FormatLegacy}
	_, err = pushTo(t, reg, repo, []string{"latest"}, r, l, res, popts)
	var pe *publish.Error
	if !errors.As(err, &pe) || !errors.Is(err, errs.ErrPublish) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"signing", "published: image (by digest)", "not published: signature, provenance attestation, tag latest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if tags, _ := reg.ListTags(ctx, repo); contains(tags, "latest") {
		t.Fatalf("tag moved although signing failed: %v", tags)
	}

	refuse.Store(false)
	for i := 0; i < 2; i++ {
		rep, err := pushTo(t, reg, repo, []string{"latest"}, r, l, res, popts)
		if err != nil {
			t.Fatalf("re-run %d: %v", i, err)
		}
		if i == 1 {
			// The second re-run finds the same build's provenance and keeps it.
			for _, a := range append(rep.Signature.Artifacts, rep.Attestation.Artifacts...) {
				if a.Action != sign.Unchanged {
					t.Errorf("re-run rewrote %s (%s)", a.Kind, a.Action)
				}
			}
			if len(rep.Attestation.Artifacts) == 0 {
				t.Error("re-run reports no attestation")
			}
		}
	}
	desc, err := reg.Resolve(ctx, repo+":latest")
	if err != nil || desc.Digest != res.Digest {
		t.Fatalf("latest = %v, %v", desc.Digest, err)
	}
	st, _ := store.NewRegistry(reg, repo)
	sigs, err := sign.FetchSignatures(ctx, st, res.Digest)
	if err != nil || len(sigs) != 1 {
		t.Fatalf("%d signatures after three runs (want 1): %v", len(sigs), err)
	}
	atts, err := sign.FetchAttestations(ctx, st, res.Digest)
	if err != nil || len(atts) != 1 {
		t.Fatalf("%d attestations after re-runs (want 1): %v", len(atts), err)
	}
}

// pushTo publishes res, pushed by digest to repo, through publish.New.
func pushTo(t *testing.T, c *registry.Client, repo string, tags []string, r *recipe.Recipe, l *lock.Lock, res *build.Result, opts publish.Options) (*publish.Report, error) {
	t.Helper()
	st, err := store.NewRegistry(c, repo)
	if err != nil {
		t.Fatal(err)
	}
	return publish.New(opts).Publish(context.Background(), st, tags, r, l, res)
}

// publishLayout publishes res, exported into the layout dir.
func publishLayout(t *testing.T, dir string, r *recipe.Recipe, l *lock.Lock, res *build.Result, opts publish.Options) (*publish.Report, error) {
	t.Helper()
	st, err := store.OpenLayout(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return publish.New(opts).Publish(context.Background(), st, nil, r, l, res)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestNoCredentialsInProvenance: the upstream needs a user and a token (a
// real git smart-HTTP server checks them). A recipe that puts them in the
// URL is refused; with them in git's credential helper, as the error says,
// the image builds (BuildKit gets them as a session secret), and neither
// the lock, the provenance, the image config nor the progress output
// contains them.
func TestNoCredentialsInProvenance(t *testing.T) {
	e := start(t)
	up := e.NewUpstream(t, "private")
	// A commit of this run's own: BuildKit keys a git source by its
	// commit, so an earlier test's (or run's) fetch of the fixture's
	// commits would spare this build from asking for credentials.
	up.Write("run-id", strconv.FormatInt(time.Now().UnixNano(), 10))
	up.Commit("this run", fixture.T0.Add(48*time.Hour))
	const user, token = "ci-bot", "ghp_SuperSecretToken123"
	git := &cgi.Handler{Path: "/usr/lib/git-core/git-http-backend", Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(up.GitDir), "GIT_HTTP_EXPORT_ALL=1"}}
	var authorized atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || u != user || p != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		authorized.Add(1)
		git.ServeHTTP(w, req)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	withCreds := "http://" + user + ":" + token + "@" + host + "/private.git"
	_, err := recipe.Load(e.WriteRecipe(t, fixture.NativeRecipe, withCreds, fixture.Patches()))
	if err == nil || !strings.Contains(err.Error(), "credential helper") || strings.Contains(err.Error(), token) {
		t.Fatalf("a recipe with credentials in its URL: %v", err)
	}

	// git's own credential store, in a HOME of the test's.
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	if err := os.WriteFile(filepath.Join(home, ".gitconfig"), []byte("[credential]\n\thelper = store\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".git-credentials"), []byte("http://"+user+":"+token+"@"+host+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gitURL := "http://" + host + "/private.git"
	path := e.WriteRecipe(t, fixture.NativeRecipe, gitURL, fixture.Patches())
	r, l := e.Lock(t, path, lock.Options{})
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "oci")
	o := e.opts
	o.Output = build.Output{OCIDir: dir}
	var progress bytes.Buffer
	o.Progress, o.ProgressMode = &progress, "plain"
	o.GitCredentials = lock.GitCLI{}.Credential
	locked := authorized.Load()
	res, err := build.Build(ctx, r, l, o)
	if err != nil {
		t.Fatal(err)
	}
	// BuildKit fetched with the credentials git's helper gave vmbuild.
	if authorized.Load() == locked {
		t.Error("BuildKit made no authorized request to the upstream")
	}
	rep, err := publishLayout(t, dir, r, l, res, publish.Options{Signer: e.signer})
	if err != nil {
		t.Fatal(err)
	}
	lockFile, err := os.ReadFile(r.LockPath())
	if err != nil {
		t.Fatal(err)
	}
	for what, b := range map[string][]byte{"provenance": rep.Statement, "image config": mustJSON(t, res.Config), "lock": lockFile, "progress": progress.Bytes()} {
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte(user+":")) {
			t.Errorf("%s leaks credentials: %s", what, b)
		}
	}
	if !bytes.Contains(rep.Statement, []byte(l.Upstream.Commit)) {
		t.Errorf("statement lacks the commit")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPublishWithoutKey: a rebuild whose image is already signed and
// attested by the key, for an equivalent build, publishes (moves its
// tags) without loading the private key; anything missing loads it; a
// public key that is not the signer's is refused; no signer at all moves
// the tags with a warning.
func TestPublishWithoutKey(t *testing.T) {
	e := start(t)
	up := e.NewUpstream(t, "nokey")
	path := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	r, l := e.Lock(t, path, lock.Options{})
	ctx := context.Background()
	repo := e.Reg.Ref("nokey")
	o := e.opts
	o.Output = build.Output{PushRepo: repo}
	res, err := build.Build(ctx, r, l, o)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.NewRegistry(e.Registry(), repo)
	if err != nil {
		t.Fatal(err)
	}
	loads := 0
	lazy := publish.Options{PublicKey: e.signer.Public(), LoadSigner: func() (*sign.Signer, error) { loads++; return e.signer, nil }}

	// Nothing there yet: the key is loaded, and everything written.
	rep, err := publish.New(lazy).Publish(ctx, st, []string{"v1"}, r, l, res)
	if err != nil || loads != 1 || len(rep.Signature.Artifacts) != 1 || rep.Signature.Artifacts[0].Action != sign.Added {
		t.Fatalf("first publish: %+v, %v, %d loads", rep, err, loads)
	}
	// Again: nothing to write, the key is not loaded, a new tag moves.
	rep, err = publish.New(lazy).Publish(ctx, st, []string{"v2"}, r, l, res)
	if err != nil || loads != 1 {
		t.Fatalf("no-op publish: %v, %d loads", err, loads)
	}
	for _, a := range append(rep.Signature.Artifacts, rep.Attestation.Artifacts...) {
		if a.Action != sign.Unchanged {
			t.Errorf("no-op publish: %s %s", a.Kind, a.Action)
		}
	}
	if len(rep.Signature.Artifacts) != 1 || len(rep.Attestation.Artifacts) != 1 || len(rep.Tags) != 1 {
		t.Fatalf("no-op publish report: %+v", rep)
	}
	if d, err := e.Registry().Resolve(ctx, repo+":v2"); err != nil || d.Digest != res.Digest {
		t.Fatalf("v2 = %v, %v", d.Digest, err)
	}
	// The bundle format is missing: the key is loaded to write it.
	lazy.Formats = sign.FormatAll
	if _, err := publish.New(lazy).Publish(ctx, st, nil, r, l, res); err != nil || loads != 2 {
		t.Fatalf("publish of a missing format: %v, %d loads", err, loads)
	}
	// A public key that is not the signer's.
	other, _ := sign.NewSigner(mustECDSA(t))
	wrong := publish.Options{PublicKey: other.Public(), LoadSigner: lazy.LoadSigner}
	if _, err := publish.New(wrong).Publish(ctx, st, nil, r, l, res); !errors.Is(err, errs.ErrKey) {
		t.Fatalf("a public key that is not the signer's: %v", err)
	}
	sigs, err := sign.FetchSignatures(ctx, st, res.Digest)
	if err != nil || len(sigs) != 2 {
		t.Fatalf("%d signatures (want one legacy, one bundle): %v", len(sigs), err)
	}

	// No signer: tags only, and a warning.
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rep, err = publish.New(publish.Options{Logger: log}).Publish(ctx, st, []string{"unsigned"}, r, l, res)
	if err != nil || len(rep.Tags) != 1 || len(rep.Signature.Artifacts) != 0 {
		t.Fatalf("unsigned publish: %+v, %v", rep, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "without signature or provenance") {
		t.Fatalf("no warning: %s", logs.String())
	}
	if d, err := e.Registry().Resolve(ctx, repo+":unsigned"); err != nil || d.Digest != res.Digest {
		t.Fatalf("unsigned = %v, %v", d.Digest, err)
	}
}

func mustECDSA(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSBOMAttested: when the lock pins packages, publish attests an SPDX
// SBOM of them after the provenance and before any tag, with the same
// key; stock cosign v2 and v3 verify it with `--type spdxjson`; the
// provenance lists every pin; publishing again changes nothing.
func TestSBOMAttested(t *testing.T) {
	e := start(t)
	up := e.NewUpstream(t, "sbom")
	path := e.WriteRecipe(t, fixture.NativeRecipe, up.URL, fixture.Patches())
	r, l := e.Lock(t, path, lock.Options{})
	layer := r.OrderedLayers()[0].Name
	// The pins are what publish reads; the image is the fixture's.
	ms := deps.Package{Name: "ms", Version: "2.1.3", URL: "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz", SHA256: strings.Repeat("9", 64), Path: "ms/-/ms-2.1.3.tgz"}
	yarn := deps.Package{Name: "@yarnpkg/cli-dist", Version: "4.18.0", URL: "https://registry.npmjs.org/@yarnpkg/cli-dist/-/cli-dist-4.18.0.tgz", SHA256: strings.Repeat("8", 64), Path: "yarn.tgz"}
	l.DepsLock = &lock.DepsLock{Version: lock.DepsVersion, Layers: []lock.LayerDeps{{
		Layer: layer, Manager: "yarn-berry", Lockfile: "yarn.lock", LockfileSHA256: strings.Repeat("7", 64),
		Tool: &lock.ToolPin{Package: yarn, Entry: "package/bin/yarn.js"}, Packages: []lock.PackagePin{{Package: ms}},
	}}}
	ctx := context.Background()
	repo := e.Reg.Ref("sbom")
	o := e.opts
	o.Output = build.Output{PushRepo: repo}
	res, err := build.Build(ctx, r, l, o)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := pushTo(t, e.Registry(), repo, []string{"latest"}, r, l, res, publish.Options{Signer: e.signer})
	if err != nil {
		t.Fatal(err)
	}
	if rep.SBOM == nil || len(rep.SBOM.Artifacts) != 1 || rep.SBOM.Artifacts[0].Action != sign.Added {
		t.Fatalf("SBOM not attested: %+v", rep.SBOM)
	}
	for _, want := range []string{`"uri":"pkg:npm/ms@2.1.3"`, `"downloadLocation":"https://registry.npmjs.org/ms/-/ms-2.1.3.tgz"`, `"name":"tool","uri":"pkg:npm/%40yarnpkg/cli-dist@4.18.0"`, `{"layer":"` + layer + `"}`} {
		if !bytes.Contains(rep.Statement, []byte(want)) {
			t.Errorf("provenance lacks %s", want)
		}
	}
	ref := repo + "@" + res.Digest.String()
	for _, bin := range []string{"cosign", "cosign3"} {
		args := []string{"verify-attestation", "--key", "vmbuild.pub", "--insecure-ignore-tlog", "--allow-insecure-registry", "--allow-http-registry", "--type", "spdxjson", ref}
		out, err := e.cosign(t, bin, args...)
		if err != nil {
			t.Errorf("%s verify-attestation --type spdxjson: %v\n%s", bin, err, out)
			continue
		}
		if !strings.Contains(decodePayloads(t, out), `"referenceLocator":"pkg:npm/ms@2.1.3"`) {
			t.Errorf("%s: the verified SBOM lacks ms:\n%s", bin, out)
		}
		// The provenance attestation is still there beside it.
		if out, err := e.cosign(t, bin, remoteArgs("verify-attestation", "vmbuild.pub", ref)...); err != nil {
			t.Errorf("%s verify-attestation --type slsaprovenance1 beside the SBOM: %v\n%s", bin, err, out)
		}
		args[2] = "other.pub"
		if out, err := e.cosign(t, bin, args...); err == nil {
			t.Errorf("%s accepted the SBOM with another key:\n%s", bin, out)
		}
	}
	again, err := pushTo(t, e.Registry(), repo, []string{"latest"}, r, l, res, publish.Options{Signer: e.signer})
	if err != nil {
		t.Fatal(err)
	}
	if again.SBOM == nil || len(again.SBOM.Artifacts) != 1 || again.SBOM.Artifacts[0].Action != sign.Unchanged {
		t.Fatalf("publishing again rewrote the SBOM: %+v", again.SBOM)
	}
}

// decodePayloads returns cosign's verified output with each DSSE payload
// decoded.
func decodePayloads(t *testing.T, out string) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		var env struct{ Payload []byte }
		if json.Unmarshal([]byte(line), &env) == nil && env.Payload != nil {
			b.Write(env.Payload)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
