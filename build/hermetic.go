package build

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"

	"github.com/vmbuild/vmbuild/internal/redact"
)

// Kinds of Access, as the provenance records them
// (internalParameters.nonHermetic).
const (
	// AccessNetwork is a step that ran with network access.
	AccessNetwork = "network"
	// AccessHTTP is an http(s) download that no checksum pins (a
	// Dockerfile's ADD <url> without --checksum).
	AccessHTTP = "http"
	// AccessGit is a git fetch that no commit pins (ADD <git url>).
	AccessGit = "git"
)

// Network modes of an AccessNetwork step.
const (
	// NetworkSandbox is BuildKit's default network, which a step gets
	// unless it asks for none: a Dockerfile RUN without --network=none.
	NetworkSandbox = "sandbox"
	// NetworkHost is the host's network: a native layer with
	// `network: host`, RUN --network=host.
	NetworkHost = "host"
)

// Access is one way a build reached beyond its pinned inputs, read from
// the LLB that BuildKit solved: a step with network access, or a source
// that nothing pins. Images are not listed (the lock pins every image
// and the source policy enforces it), nor are vmbuild's own sources (the
// upstream commit, local trees).
type Access struct {
	Kind    string `json:"kind"`
	Step    string `json:"step,omitempty"`    // the step as BuildKit names it, on one line, URLs redacted
	Network string `json:"network,omitempty"` // AccessNetwork: NetworkSandbox or NetworkHost
	URL     string `json:"url,omitempty"`     // AccessHTTP, AccessGit: the URL, sanitized
}

// maxStepName bounds a recorded step name.
const maxStepName = 200

var fullCommit = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// nonHermetic lists what def reaches beyond its pinned inputs, sorted
// and without duplicates; never nil.
func nonHermetic(def *pb.Definition) ([]Access, error) {
	out := []Access{}
	seen := map[Access]bool{}
	for _, b := range def.GetDef() {
		var op pb.Op
		if err := op.UnmarshalVT(b); err != nil {
			return nil, fmt.Errorf("reading the solved LLB: %w", err)
		}
		name := ""
		if md := def.GetMetadata()[digest.FromBytes(b).String()]; md != nil {
			name = md.GetDescription()["llb.customname"]
		}
		a, ok := access(&op, name)
		if ok && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sortAccesses(out)
	return out, nil
}

func sortAccesses(l []Access) {
	sort.Slice(l, func(i, j int) bool {
		x, y := l[i], l[j]
		if x.Kind != y.Kind {
			return x.Kind < y.Kind
		}
		if x.URL != y.URL {
			return x.URL < y.URL
		}
		if x.Step != y.Step {
			return x.Step < y.Step
		}
		return x.Network < y.Network
	})
}

// access classifies one op.
func access(op *pb.Op, name string) (Access, bool) {
	if e := op.GetExec(); e != nil {
		var mode string
		switch e.GetNetwork() {
		case pb.NetMode_NONE:
			return Access{}, false
		case pb.NetMode_HOST:
			mode = NetworkHost
		default: // UNSET: the sandbox's network
			mode = NetworkSandbox
		}
		if name == "" {
			name = strings.Join(e.GetMeta().GetArgs(), " ")
		}
		return Access{Kind: AccessNetwork, Step: stepName(name), Network: mode}, true
	}
	src := op.GetSource()
	if src == nil {
		return Access{}, false
	}
	id, attrs := src.GetIdentifier(), src.GetAttrs()
	switch {
	case strings.HasPrefix(id, "https://") || strings.HasPrefix(id, "http://"):
		if attrs[pb.AttrHTTPChecksum] != "" {
			return Access{}, false
		}
		return Access{Kind: AccessHTTP, URL: sanitize(id)}, true
	case strings.HasPrefix(id, "git://"):
		_, ref, _ := strings.Cut(strings.TrimPrefix(id, "git://"), "#")
		ref, _, _ = strings.Cut(ref, ":")
		if attrs[pb.AttrGitChecksum] != "" || fullCommit.MatchString(ref) {
			return Access{}, false
		}
		u := attrs[pb.AttrFullRemoteURL]
		if u == "" {
			u = "git://" + strings.TrimPrefix(id, "git://")
		}
		return Access{Kind: AccessGit, URL: sanitize(u)}, true
	}
	return Access{}, false
}

// sanitize is a URL as provenance records it: without user info, query
// or fragment. A URL that does not parse is recorded as such, never as
// is.
func sanitize(u string) string {
	clean, err := redact.URL(u)
	if err != nil {
		return "unparseable-url"
	}
	return clean
}

// stepName is a step's name on one line, with URLs redacted, at most
// maxStepName bytes.
func stepName(s string) string {
	s = redact.Text(strings.Join(strings.Fields(s), " "))
	if len(s) > maxStepName {
		cut := maxStepName
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if s == "" {
		s = "(unnamed step)"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// resultNonHermetic reads the LLB behind a frontend's result (every
// reference of it) and lists what it reaches beyond its pinned inputs.
func resultNonHermetic(ctx context.Context, res *gateway.Result) ([]Access, error) {
	var refs []gateway.Reference
	if res.Ref != nil {
		refs = append(refs, res.Ref)
	}
	for _, k := range sortedRefKeys(res.Refs) {
		if r := res.Refs[k]; r != nil {
			refs = append(refs, r)
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("reading the solved LLB: the frontend returned no reference")
	}
	out := []Access{}
	seen := map[Access]bool{}
	for _, r := range refs {
		st, err := r.ToState()
		if err != nil {
			return nil, fmt.Errorf("reading the solved LLB: %w", err)
		}
		def, err := st.Marshal(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the solved LLB: %w", err)
		}
		acc, err := nonHermetic(def.ToPB())
		if err != nil {
			return nil, err
		}
		for _, a := range acc {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	sortAccesses(out)
	return out, nil
}

func sortedRefKeys(m map[string]gateway.Reference) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
