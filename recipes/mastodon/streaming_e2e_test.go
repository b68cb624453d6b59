package mastodon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/internal/fixture"
	"github.com/vmbuild/vmbuild/internal/localsvc"
	"github.com/vmbuild/vmbuild/internal/testenv"
	"github.com/vmbuild/vmbuild/sign"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const recipeStreamingHermetic = "streaming-hermetic.yaml"

// bundlePath is the real Mastodon main of ../shared/fixtures (from the
// project root), which tests read in place.
func bundlePath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(testenv.RepoRoot(), "..", "shared", "fixtures", "mastodon", "mastodon-main.bundle")
	if _, err := os.Stat(p); err != nil {
		testenv.RequireIntegration(t)
		t.Fatalf("the real Mastodon source is not at %s: %v", p, err)
	}
	return p
}

// vmbuild runs the CLI as a user would, failing the test on an error.
func vmbuild(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, err := vmbuildErr(t, env, args...)
	if err != nil {
		t.Fatalf("vmbuild %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func vmbuildErr(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testenv.Bin(t, "vmbuild"), args...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestStreamingHermeticEndToEnd is the real Mastodon streaming server,
// from real upstream source, built hermetically and run:
//
//   - the bundle served by git daemon; the recipe locked (Debian sid's
//     nodejs and its closure, the streaming workspace's packages and Yarn
//     from the npm registry, every one pinned by sha256), built with no
//     network in any step, pushed, signed and attested;
//   - vmbuild verify with a policy naming the commit;
//   - the image unpacked and run under runc, against Debian's Redis and
//     PostgreSQL on loopback: the health check answers OK, a bad token is
//     refused with 401, and an event published to Redis on
//     timeline:<accountId> reaches a client of the user stream over SSE;
//   - vmbuild build --check reproduces the digest.
func TestStreamingHermeticEndToEnd(t *testing.T) {
	e := fixture.Start(t)
	redis := testenv.StartRedis(t)
	pg := testenv.StartPostgres(t)
	work := t.TempDir()

	// Upstream: the real bundle, served by git daemon.
	clone := exec.Command("git", "clone", "--quiet", "--bare", bundlePath(t), filepath.Join(e.Git.BaseDir, "mastodon.git"))
	if out, err := clone.CombinedOutput(); err != nil {
		t.Fatalf("cloning the bundle: %v\n%s", err, out)
	}
	gitURL := e.Git.URL("mastodon")

	// The committed recipe, pointed at the bundle. sid's InRelease is
	// expired on these machines (its mirror's Valid-Until passed): the
	// opt-out is the one change besides the upstream URL.
	raw, err := os.ReadFile(recipeStreamingHermetic)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(raw), "https://github.com/mastodon/mastodon.git", gitURL, 1)
	body = strings.Replace(body, "    suite: sid\n", "    suite: sid\n    allowExpired: true\n", 1)
	if body == string(raw) {
		t.Fatal("the recipe's upstream or suite line moved: update this test")
	}
	recipePath := filepath.Join(work, "streaming.yaml")
	if err := os.WriteFile(recipePath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	priv, pub, err := sign.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	keyPath, pubPath := filepath.Join(work, "cosign.key"), filepath.Join(work, "cosign.pub")
	os.WriteFile(keyPath, priv, 0o600)
	os.WriteFile(pubPath, pub, 0o644)
	env := []string{"BUILDKIT_HOST=" + e.BK.Addr, "COSIGN_PASSWORD=pw", "VMBUILD_CACHE_DIR=" + filepath.Join(work, "cache")}

	vmbuild(t, env, "lock", recipePath)
	var l struct {
		Upstream struct{ Commit string }
		Debian   struct {
			Packages  int
			InRelease struct{ SignedBy string }
		}
		Deps struct{ Packages int }
	}
	lockJSON, err := os.ReadFile(filepath.Join(work, "mastodon-streaming-hermetic.lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lockJSON, &l); err != nil {
		t.Fatal(err)
	}
	if l.Upstream.Commit != "b588e5ead5411e91d2844848a975e1e78e151375" || l.Debian.Packages < 30 || l.Deps.Packages < l.Debian.Packages+152 {
		t.Fatalf("lock: commit %s, %d Debian packages, %d pins in all", l.Upstream.Commit, l.Debian.Packages, l.Deps.Packages)
	}

	// Build, push, sign, attest.
	repo := e.Reg.Ref("mastodon-streaming")
	start := time.Now()
	out := vmbuild(t, env, "build", recipePath, "--push", repo+":edge", "--key", keyPath, "--progress", "plain")
	t.Logf("cold build and publish: %s", time.Since(start).Round(time.Second))
	dgst := lastDigest(t, out)
	if strings.Contains(out, "network: host") {
		t.Errorf("the build warned of a networked layer:\n%s", out)
	}

	policy := filepath.Join(work, "policy.yaml")
	os.WriteFile(policy, []byte(fmt.Sprintf(`apiVersion: vmbuild/v1
kind: VerifyPolicy
source: %s
commits: [%s]
patches: []
baseImages: any
hermetic: true
debianBase:
  suites: [sid]
  signedBy: [%s]
`, gitURL, l.Upstream.Commit, l.Debian.InRelease.SignedBy)), 0o644)
	ref := repo + "@" + dgst.String()
	out = vmbuild(t, env, "verify", ref, "--key", pubPath, "--policy", policy)
	for _, want := range []string{"PASS  hermetic", "PASS  debian-base", "VERIFIED"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify: no %q:\n%s", want, out)
		}
	}
	// Stock cosign verifies the SBOM (and the provenance) with the key;
	// the SBOM names the packages, the provenance every pin.
	for _, typ := range []string{"spdxjson", "slsaprovenance1"} {
		cmd := exec.Command(testenv.Bin(t, "cosign"), "verify-attestation", "--key", pubPath, "--insecure-ignore-tlog",
			"--allow-insecure-registry", "--allow-http-registry", "--type", typ, ref)
		cmd.Env = append(os.Environ(), "TUF_ROOT="+filepath.Join(work, "tuf"))
		cout, err := cmd.Output()
		if err != nil {
			t.Fatalf("cosign verify-attestation --type %s: %v\n%s", typ, err, cout)
		}
		payloads := decodedPayloads(cout)
		for _, want := range map[string][]string{
			"spdxjson":        {`"referenceLocator":"pkg:deb/debian/nodejs@`, `"referenceLocator":"pkg:npm/pg@`, `"spdxVersion":"SPDX-2.3"`},
			"slsaprovenance1": {`"name":"base-package","uri":"pkg:deb/debian/libc6@`, `"name":"tool","uri":"pkg:npm/%40yarnpkg/cli-dist@`, `"nonHermetic":[]`},
		}[typ] {
			if !strings.Contains(payloads, want) {
				t.Errorf("%s attestation lacks %s", typ, want)
			}
		}
	}

	// Run it: the same lock into an OCI layout (all cached), unpacked for
	// runc.
	layout := filepath.Join(work, "oci")
	out = vmbuild(t, env, "build", recipePath, "--output", "oci:"+layout, "--progress", "quiet")
	if got := lastDigest(t, out); got != dgst {
		t.Fatalf("the OCI layout build gave %s, the push %s", got, dgst)
	}
	root, cfg := testenv.Unpack(t, layout, dgst)
	if cfg.Config.User != "991" || cfg.Config.WorkingDir != "/opt/mastodon" || strings.Join(cfg.Config.Cmd, " ") != "node ./streaming/index.js" {
		t.Errorf("image config %+v", cfg.Config)
	}

	// The database the streaming server reads tokens from: only what
	// accountFromToken in streaming/index.js selects.
	pg.SQL(t, "postgres", "CREATE DATABASE mastodon_production")
	pg.SQL(t, "mastodon_production", `
CREATE TABLE accounts (id bigint PRIMARY KEY, suspended_at timestamp);
CREATE TABLE user_roles (id bigint PRIMARY KEY, permissions bigint NOT NULL DEFAULT 0);
CREATE TABLE users (id bigint PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts(id), chosen_languages varchar[], disabled boolean NOT NULL DEFAULT false, role_id bigint REFERENCES user_roles(id));
CREATE TABLE oauth_access_tokens (id bigint PRIMARY KEY, token varchar NOT NULL, resource_owner_id bigint REFERENCES users(id), scopes varchar, revoked_at timestamp);
INSERT INTO accounts (id) VALUES (109);
INSERT INTO user_roles (id, permissions) VALUES (1, 0);
INSERT INTO users (id, account_id, role_id) VALUES (7, 109, 1);
INSERT INTO oauth_access_tokens (id, token, resource_owner_id, scopes) VALUES (3, 'e2e-token', 7, 'read write');
`)
	port := freePort(t)
	c := testenv.RunImage(t, root, cfg,
		fmt.Sprintf("PORT=%d", port), "BIND=127.0.0.1",
		"REDIS_HOST=127.0.0.1", fmt.Sprintf("REDIS_PORT=%d", redis.Port),
		"DB_HOST=127.0.0.1", fmt.Sprintf("DB_PORT=%d", pg.Port), "DB_USER=postgres", "DB_NAME=mastodon_production", "DB_PASS=")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	// Health.
	var health string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c.Exited() {
			t.Fatalf("the streaming server exited:\n%s", c.Output())
		}
		resp, err := http.Get(base + "/api/v1/streaming/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			health = string(b)
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if health != "OK" {
		t.Fatalf("health: %q\n%s", health, c.Output())
	}

	// A bad token is refused.
	resp, err := http.Get(base + "/api/v1/streaming/user?access_token=not-a-token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a bad token: %s, want 401", resp.Status)
	}

	// The real token on the user stream, over SSE, gets an event published
	// to Redis on timeline:109.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/streaming/user", nil)
	req.Header.Set("Authorization", "Bearer e2e-token")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("user stream: %v\n%s", err, c.Output())
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("user stream with the real token: %s\n%s", resp.Status, c.Output())
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Subscribed once the stream answered; publish until the event comes
	// (the subscription may take a moment to reach Redis).
	message := `{"event":"notification","payload":"{\"id\":\"4242\",\"type\":\"mention\"}"}`
	got := ""
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				break wait
			}
			got += line + "\n"
			if strings.Contains(got, "event: notification") && strings.Contains(got, "4242") {
				break wait
			}
		case <-tick.C:
			redisPublish(t, redis.Addr, "timeline:109", message)
		case <-ctx.Done():
			break wait
		}
	}
	if !strings.Contains(got, "event: notification") || !strings.Contains(got, "4242") {
		t.Errorf("the user stream did not deliver the Redis event; it sent:\n%s\nserver:\n%s", got, c.Output())
	}

	// Reproducible: --check builds again without cache and compares.
	out = vmbuild(t, env, "build", recipePath, "--check", "--progress", "quiet")
	if !strings.Contains(out, dgst.String()) {
		t.Errorf("build --check:\n%s", out)
	}
}

// lastDigest is the image digest vmbuild build prints as its last line.
func lastDigest(t *testing.T, out string) digest.Digest {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	d, err := digest.Parse(strings.TrimSpace(lines[len(lines)-1]))
	if err != nil {
		t.Fatalf("no digest at the end of the output:\n%s", out)
	}
	return d
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := localsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// redisPublish sends PUBLISH in Redis's protocol.
func redisPublish(t *testing.T, addr, channel, message string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("Redis at %s: %v", addr, err)
	}
	defer c.Close()
	arg := func(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }
	if _, err := io.WriteString(c, "*3\r\n"+arg("PUBLISH")+arg(channel)+arg(message)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(reply, ":") {
		t.Fatalf("Redis PUBLISH: %q %v", reply, err)
	}
}

// decodedPayloads returns the DSSE payloads in cosign's output, decoded.
func decodedPayloads(out []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(string(out), "\n") {
		var env struct{ Payload []byte }
		if json.Unmarshal([]byte(line), &env) == nil && env.Payload != nil {
			b.Write(env.Payload)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
