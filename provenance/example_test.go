package provenance

import (
	"strings"
	"time"
)

// sampleInput is the input of the golden statement,
// testdata/golden-dockerfile.json. testdata/old-dockerfile.json is the
// same build as vmbuild recorded it before it recorded patch options,
// outcomes and network access (sampleInput without them).
func sampleInput() Input {
	return Input{
		Subject:  Subject{Name: "127.0.0.1:5000/acme/app", Digest: "sha256:" + strings.Repeat("ab", 32)},
		Recipe:   Recipe{Name: "app", Path: "recipes/app/recipe.yaml", SHA256: strings.Repeat("01", 32)},
		Upstream: Upstream{URL: "https://user:ghp_secret@github.com/acme/app.git?access_token=zzz#frag", Ref: "refs/tags/v1.2.3", Commit: strings.Repeat("c", 40), CommitTime: time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("X", 3600))},
		Patches: []Patch{
			{Name: "0001-fix.patch", Kind: PatchKindDiff, SHA256: strings.Repeat("02", 32), Options: &PatchOptions{Offset: true, Fuzz: 1}, Outcome: OutcomeApplied},
			{Name: "tweak.sh", Kind: PatchKindScript, SHA256: strings.Repeat("03", 32), Options: &PatchOptions{Optional: true}, Outcome: OutcomeNoop},
		},
		Dockerfile:      &Dockerfile{Path: "Dockerfile", Target: "runtime", Args: map[string]string{"RUBY_VERSION": "3.3", "MIRROR": "https://bob:hunter2@mirror.example/x?token=t&arch=amd64", "<html>": "a&b"}},
		BuildKitVersion: "v0.34.2",
		LLBDigest:       "sha256:" + strings.Repeat("0d", 32),
		Base:            Image{Ref: "ruby:3.3-slim", Digest: "sha256:" + strings.Repeat("ba", 32)},
		Frontend:        &Image{Ref: "docker.io/docker/dockerfile:1.7", Digest: "sha256:" + strings.Repeat("fe", 32)},
		NonHermetic: []Access{
			{Kind: AccessHTTP, URI: "https://example.com/tool-1.2.tar.gz"},
			{Kind: AccessNetwork, Step: "[runtime 3/5] RUN bundle install", Network: NetworkSandbox},
		},
		InvocationID: "0f6c2f9e-1d7c-4a49-8f62-1f2d0e7e1a11",
		StartedOn:    time.Date(2024, 5, 6, 8, 0, 0, 0, time.UTC),
		FinishedOn:   time.Date(2024, 5, 6, 8, 1, 30, 500000000, time.UTC),
	}
}
