package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/vmbuild/vmbuild/internal/localsvc"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Timing is a repeated measurement of one command.
type Timing struct {
	Runs   []time.Duration `json:"runsNs"`
	Median time.Duration   `json:"medianNs"`
	Err    string          `json:"error,omitempty"`
}

// OK reports whether every run succeeded.
func (t Timing) OK() bool { return t.Err == "" && len(t.Runs) > 0 }

func (t *Timing) add(d time.Duration, err error) {
	if err != nil {
		if t.Err == "" {
			t.Err = err.Error()
		}
		return
	}
	t.Runs = append(t.Runs, d)
	t.Median = Median(t.Runs)
}

// Signing holds the figures measured once, apart from the sequences.
type Signing struct {
	// Digest of the image (vmbuild native, last commit of the sequence).
	Digest string `json:"digest"`
	// VMBuildNoSign and VMBuildKey are no-op rebuilds pushed with
	// --no-sign and with --key: their difference is vmbuild's signing and
	// attestation cost.
	VMBuildNoSign Timing `json:"vmbuildNoSign"`
	VMBuildKey    Timing `json:"vmbuildKey"`
	// VMBuildSigns is whether the --key builds reported a signature and an
	// attestation.
	VMBuildSigns bool `json:"vmbuildSigns"`
	// SignAttest is Median(key) - Median(no-sign), when VMBuildSigns.
	SignAttest time.Duration `json:"signAttestNs,omitempty"`
	// CosignSign and CosignAttest: stock cosign signing and attesting the
	// same image (pushed to another repository).
	CosignSign   Timing `json:"cosignSign"`
	CosignAttest Timing `json:"cosignAttest"`
	// VerifiedImage is the image vmbuild verify ran on, and who signed it.
	VerifiedImage string `json:"verifiedImage"`
	SignedBy      string `json:"signedBy"`
	// CosignVerifiedImage is the image cosign's verifications were timed
	// on, and who signed it: VerifiedImage, unless stock cosign rejected
	// vmbuild's signatures (then the cosign-signed copy).
	CosignVerifiedImage string `json:"cosignVerifiedImage"`
	CosignSignedBy      string `json:"cosignSignedBy"`
	// CosignAcceptsVMBuild: stock cosign verified vmbuild's signature and
	// attestation with the standard key-based, offline command. Nil when
	// vmbuild did not sign.
	CosignAcceptsVMBuild *bool  `json:"cosignAcceptsVMBuild,omitempty"`
	CosignRejection      string `json:"cosignRejection,omitempty"`
	// CosignExtraFlags are the flags cosign's verifications needed beyond
	// the standard ones.
	CosignExtraFlags string `json:"cosignExtraFlags,omitempty"`
	// CosignVerify and CosignVerifyAttestation: stock cosign's two checks.
	CosignVerify            Timing `json:"cosignVerify"`
	CosignVerifyAttestation Timing `json:"cosignVerifyAttestation"`
	// VMBuildVerify: `vmbuild verify REF@DIGEST --key cosign.pub
	// --no-policy` (signatures, provenance form, builder: what cosign's two
	// commands check, and more). VMBuildVerifyPolicy: with --policy (source,
	// commit, patches and base image pinned too).
	VMBuildVerify       Timing   `json:"vmbuildVerify"`
	VMBuildVerifyPolicy Timing   `json:"vmbuildVerifyPolicy"`
	Notes               []string `json:"notes"`
}

func (s *Signing) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// signing measures, once: vmbuild's sign+attest cost, stock cosign's
// sign+attest, and verification by vmbuild and by stock cosign.
func (b *bench) signing(ctx context.Context) *Signing {
	s := &Signing{Notes: []string{}}
	native, ok := ContenderByID("native")
	if !ok || b.recipes["native"] == "" {
		s.note("skipped: the native contender was not run")
		return s
	}
	n := b.cfg.Reps
	if n < 3 && b.cfg.Size.Name == "full" {
		n = 3
	}
	logDir := filepath.Join(b.cfg.WorkDir, "logs", "signing")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		b.errorf("signing: %v", err)
		return s
	}
	last := b.runs[len(b.runs)-1]
	logPath := filepath.Join(logDir, "signing.log")
	if _, err := b.lock(ctx, native, last.Commit, logPath); err != nil {
		b.errorf("signing: %v", err)
		return s
	}
	build := func(repoTag string, sign bool, tag string) (time.Duration, *VMBuildMetadata, error) {
		meta := filepath.Join(b.cfg.WorkDir, "meta", "signing-"+tag+".json")
		argv := []string{b.bins["vmbuild"], "build", b.recipes["native"], "--addr", b.bk.Addr,
			"--push", b.reg.Ref(repoTag), "--metadata-file", meta, "--progress", "plain"}
		if sign {
			argv = append(argv, "--key", filepath.Join(b.keys, "cosign.key"))
		} else {
			argv = append(argv, "--no-sign")
		}
		_, wall, err := b.command(ctx, logPath, argv...)
		if err != nil {
			return wall, nil, err
		}
		md, err := ReadVMBuildMetadata(meta)
		return wall, md, err
	}
	// Warm the cache (this build is not reported).
	_, md, err := build("bench/sign:warm", false, "warm")
	if err != nil {
		b.errorf("signing: warm-up build: %v", err)
		return s
	}
	s.Digest = md.Digest
	signs := true
	for i := 1; i <= n; i++ {
		d, md, err := build(fmt.Sprintf("bench/sign:nosign-%d", i), false, fmt.Sprintf("nosign-%d", i))
		s.VMBuildNoSign.add(d, err)
		if err == nil && md.Digest != s.Digest {
			s.note("the --no-sign rebuild %d gave digest %s, not %s", i, md.Digest, s.Digest)
		}
		d, md, err = build(fmt.Sprintf("bench/sign:key-%d", i), true, fmt.Sprintf("key-%d", i))
		s.VMBuildKey.add(d, err)
		if err == nil {
			if md.Published == nil || !md.Published.Signed || !md.Published.Attested {
				signs = false
			}
		}
	}
	if !s.VMBuildKey.OK() || !s.VMBuildNoSign.OK() {
		b.errorf("signing: vmbuild builds failed: %s %s", s.VMBuildNoSign.Err, s.VMBuildKey.Err)
		return s
	}
	s.VMBuildSigns = signs
	b.res.Capabilities.Signs = signs
	if signs {
		s.SignAttest = s.VMBuildKey.Median - s.VMBuildNoSign.Median
	} else {
		s.note("`vmbuild build --push --key` did not report a signature and an attestation (metadata published.signed/attested false): vmbuild's signing is not implemented in this build, so its sign+attest time is not measured")
	}

	// Stock cosign signs and attests a copy of the same image.
	if _, _, err := build("bench/sign-cosign:latest", false, "cosign-copy"); err != nil {
		b.errorf("signing: pushing the copy for cosign: %v", err)
		return s
	}
	cosignRef := b.reg.Ref("bench/sign-cosign") + "@" + s.Digest
	pred := filepath.Join(b.cfg.WorkDir, "keys", "provenance.json")
	if err := os.WriteFile(pred, slsaPredicate(b.repo, last.Commit), 0o644); err != nil {
		b.errorf("signing: %v", err)
		return s
	}
	key := filepath.Join(b.keys, "cosign.key")
	pub := filepath.Join(b.keys, "cosign.pub")
	cosign := b.bins["cosign"]
	reg := []string{"--allow-insecure-registry", "--allow-http-registry"}
	for i := 0; i < n; i++ {
		_, d, err := b.command(ctx, logPath, append([]string{cosign, "sign", "--key", key, "--tlog-upload=false", "--yes"}, append(reg, cosignRef)...)...)
		s.CosignSign.add(d, err)
		_, d, err = b.command(ctx, logPath, append([]string{cosign, "attest", "--key", key, "--type", "slsaprovenance1", "--predicate", pred, "--tlog-upload=false", "--yes"}, append(reg, cosignRef)...)...)
		s.CosignAttest.add(d, err)
	}
	if !s.CosignSign.OK() || !s.CosignAttest.OK() {
		b.errorf("signing: stock cosign sign/attest failed: %s %s", s.CosignSign.Err, s.CosignAttest.Err)
	}

	// Verification: on vmbuild's signed image when vmbuild signs, else on
	// the cosign-signed copy.
	s.VerifiedImage, s.SignedBy = cosignRef, "cosign"
	if signs {
		s.VerifiedImage, s.SignedBy = b.reg.Ref("bench/sign")+"@"+s.Digest, "vmbuild"
	}
	verify := func(t *Timing, argv ...string) {
		for i := 0; i < n; i++ {
			_, d, err := b.command(ctx, logPath, argv...)
			t.add(d, err)
		}
	}
	cosignVerify := func(ref string, extra ...string) (Timing, Timing) {
		var v, va Timing
		args := append(append(append([]string(nil), reg...), extra...), ref)
		verify(&v, append([]string{cosign, "verify", "--key", pub, "--insecure-ignore-tlog"}, args...)...)
		verify(&va, append([]string{cosign, "verify-attestation", "--key", pub, "--type", "slsaprovenance1", "--insecure-ignore-tlog"}, args...)...)
		return v, va
	}
	s.CosignVerifiedImage, s.CosignSignedBy = s.VerifiedImage, s.SignedBy
	s.CosignVerify, s.CosignVerifyAttestation = cosignVerify(s.VerifiedImage)
	if signs {
		ok := s.CosignVerify.OK() && s.CosignVerifyAttestation.OK()
		s.CosignAcceptsVMBuild = &ok
		if !ok {
			// A finding about vmbuild's output, not a harness error.
			s.CosignRejection = reasonOf(s.CosignVerify.Err)
			if s.CosignRejection == "" {
				s.CosignRejection = reasonOf(s.CosignVerifyAttestation.Err)
			}
			b.log.Warn("stock cosign rejected vmbuild's signature", "image", s.VerifiedImage, "reason", s.CosignRejection)
			// cosign v2.6 switches to the Sigstore bundle format when the
			// image has bundle referrers, and then insists on a trusted
			// root, which it fetches over the network; an empty one
			// given with --trusted-root is enough for key-based,
			// tlog-less verification.
			root := filepath.Join(b.cfg.WorkDir, "keys", "empty-trusted-root.json")
			_ = os.WriteFile(root, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`+"\n"), 0o644)
			v, va := cosignVerify(s.VerifiedImage, "--trusted-root", root)
			if v.OK() && va.OK() {
				s.CosignVerify, s.CosignVerifyAttestation = v, va
				s.CosignExtraFlags = "--trusted-root EMPTY.json"
				s.note("stock cosign v2 REJECTED vmbuild's signature and attestation with the standard offline commands (%q): the image carries Sigstore bundle referrers, which make cosign v2.6 switch to the bundle format and require a trusted root, which it cannot fetch offline. With `--trusted-root` pointing to an empty trusted root (`{\"mediaType\":\"application/vnd.dev.sigstore.trustedroot+json;version=0.1\"}`) it verifies both: cosign's times are taken that way, on vmbuild's image.", s.CosignRejection)
			} else {
				s.note("stock cosign v2 REJECTED vmbuild's signature and attestation (%q), also with an empty --trusted-root (%s): cosign's times are taken on the cosign-signed copy of the same image instead.", s.CosignRejection, reasonOf(v.Err+va.Err))
				s.CosignVerifiedImage, s.CosignSignedBy = cosignRef, "cosign"
				s.CosignVerify, s.CosignVerifyAttestation = cosignVerify(cosignRef)
			}
		}
	}
	if !s.CosignVerify.OK() || !s.CosignVerifyAttestation.OK() {
		b.errorf("signing: stock cosign verification failed: %s %s", s.CosignVerify.Err, s.CosignVerifyAttestation.Err)
	}
	if s.CosignExtraFlags == "" && strings.Contains(localsvc.Tail(logPath, 400), "Could not fetch trusted_root.json") {
		s.note("stock cosign tries to fetch the Sigstore trusted root from its TUF repository first; with no network here that fails at once (DNS), and its times include the attempt")
	}
	if b.res.Capabilities.Verify {
		policy := filepath.Join(b.cfg.WorkDir, "keys", "policy.yaml")
		baseDigest := b.base[strings.LastIndex(b.base, "@")+1:]
		body := fmt.Sprintf("apiVersion: vmbuild/v1\nkind: VerifyPolicy\nsource: %s\ncommits:\n  - %s\npatches: []\nbaseImages:\n  - %s\n", b.repo, last.Commit, baseDigest)
		if err := os.WriteFile(policy, []byte(body), 0o644); err != nil {
			b.errorf("signing: %v", err)
			return s
		}
		vm := b.bins["vmbuild"]
		verify(&s.VMBuildVerify, vm, "verify", s.VerifiedImage, "--key", pub, "--no-policy")
		verify(&s.VMBuildVerifyPolicy, vm, "verify", s.VerifiedImage, "--key", pub, "--policy", policy)
		for _, t := range []struct {
			name string
			t    Timing
		}{{"--no-policy", s.VMBuildVerify}, {"--policy", s.VMBuildVerifyPolicy}} {
			if t.t.OK() {
				continue
			}
			if signs {
				b.errorf("signing: vmbuild verify %s failed on vmbuild's own image %s: %s", t.name, s.VerifiedImage, reasonOf(t.t.Err))
			} else {
				s.note("vmbuild verify %s failed on the cosign-signed image (expected: no vmbuild provenance): %s", t.name, reasonOf(t.t.Err))
			}
		}
	} else {
		s.note("`vmbuild verify` is not in this vmbuild: its time is not measured")
	}
	return s
}

// reasonOf is the short reason of an error recorded in a Timing.
func reasonOf(e string) string {
	if i := strings.Index(e, "): "); i >= 0 {
		e = e[i+3:]
	}
	if i := strings.Index(e, " (log: "); i >= 0 {
		e = e[:i]
	}
	return FirstLine(e)
}

func okOr(t Timing) string {
	if t.OK() {
		return "ok"
	}
	return "failed"
}

// slsaPredicate is a minimal SLSA v1 provenance predicate for stock
// cosign's attestation.
func slsaPredicate(repo, commit string) []byte {
	p := map[string]any{
		"buildDefinition": map[string]any{
			"buildType":          "https://github.com/vmbuild/vmbuild/bench/stock-cosign/v1",
			"externalParameters": map[string]any{"source": repo, "commit": commit},
			"resolvedDependencies": []any{
				map[string]any{"uri": "git+" + repo, "digest": map[string]string{"gitCommit": commit}},
			},
		},
		"runDetails": map[string]any{"builder": map[string]string{"id": "https://github.com/vmbuild/vmbuild/bench"}},
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	return b
}
