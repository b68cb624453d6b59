package llb

import (
	"fmt"
	"sort"
	"strings"

	spb "github.com/moby/buildkit/sourcepolicy/pb"

	"github.com/vmbuild/vmbuild/lock"
)

// DOT renders the recipe's layer graph (not every LLB op: the steps a
// recipe author thinks in) in Graphviz DOT.
func (g *Graph) DOT() string {
	r, l := g.Recipe, g.Lock
	var b strings.Builder
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	fmt.Fprintf(&b, "digraph %s {\n", q(r.Name))
	b.WriteString("  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n")
	fmt.Fprintf(&b, "  source [label=%s, shape=folder];\n", q(fmt.Sprintf("source\n%s\n%s@%s", RedactURL(r.Upstream.Git), r.Upstream.Ref, l.ShortCommit())))
	switch {
	case l.Debian != nil && g.Base.Output() != nil:
		fmt.Fprintf(&b, "  base [label=%s, shape=cylinder];\n", q(fmt.Sprintf("base: %d Debian packages\n%s %s (%s)", l.Debian.Packages, l.Debian.Suite, l.Debian.Architecture, strings.Join(l.Debian.Requested, " "))))
	case g.Base.Output() != nil:
		fmt.Fprintf(&b, "  base [label=%s, shape=cylinder];\n", q("base\n"+l.Base.Pinned()))
	}
	prev := "source"
	for i, p := range g.Patches {
		id := fmt.Sprintf("patch%d", i+1)
		fmt.Fprintf(&b, "  %s [label=%s, shape=note];\n", id, q(fmt.Sprintf("patch %d: %s\n%s sha256:%s", i+1, p.Patch.Name, p.Patch.Kind, shortHex(p.Patch.SHA256))))
		fmt.Fprintf(&b, "  %s -> %s;\n", prev, id)
		if p.Patch.Kind == "script" {
			fmt.Fprintf(&b, "  base -> %s [style=dashed, label=\"runs in\"];\n", id)
		}
		prev = id
	}
	fmt.Fprintf(&b, "  patched [label=\"patched tree\", shape=folder];\n  %s -> patched;\n", prev)
	if df := r.Build.Dockerfile; df != nil {
		label := fmt.Sprintf("dockerfile %s", df.Path)
		if df.Target != "" {
			label += "\ntarget " + df.Target
		}
		if l.Frontend != nil {
			label += "\nfrontend " + l.Frontend.Pinned()
		}
		fmt.Fprintf(&b, "  dockerfile [label=%s];\n  patched -> dockerfile [label=\"context\"];\n", q(label))
		for i, im := range l.Images {
			fmt.Fprintf(&b, "  img%d [label=%s, shape=cylinder];\n  img%d -> dockerfile;\n", i, q(im.Pinned()), i)
		}
		if len(df.BaseFor) > 0 {
			fmt.Fprintf(&b, "  base -> dockerfile [label=%s];\n", q("as "+strings.Join(df.BaseFor, "\n as ")))
		}
		b.WriteString("  image [label=\"image\", shape=doubleoctagon];\n  dockerfile -> image;\n}\n")
		return b.String()
	}
	fmt.Fprintf(&b, "  srclayer [label=%s];\n  patched -> srclayer;\n", q("layer: source tree\n→ "+r.Image.Workdir))
	b.WriteString("  image [label=\"image\", shape=doubleoctagon];\n  base -> image [label=\"layers\"];\n  srclayer -> image;\n")
	for _, ls := range g.Layers {
		lay := ls.Layer
		id := "layer_" + sanitize(lay.Name)
		label := fmt.Sprintf("layer: %s\nrun: %s\nout: %s", lay.Name, abbrev(lay.Run, 40), strings.Join(lay.Outputs, " "))
		if lay.Network == "host" {
			label += "\nnetwork: host"
		}
		if ld, ok := l.DepsLock.LayerDeps(lay.Name); ok {
			label += fmt.Sprintf("\ndeps: %d %s packages (pinned, offline)", len(ld.Packages), ld.Manager)
		}
		fmt.Fprintf(&b, "  %s [label=%s];\n", id, q(label))
		inputs := "(no inputs)"
		if len(lay.Inputs) > 0 {
			inputs = strings.Join(lay.Inputs, "\n")
		}
		fmt.Fprintf(&b, "  patched -> %s [label=%s];\n", id, q(inputs))
		fmt.Fprintf(&b, "  base -> %s [style=dashed];\n", id)
		needs := append([]string(nil), lay.Needs...)
		sort.Strings(needs)
		for _, n := range needs {
			fmt.Fprintf(&b, "  layer_%s -> %s [label=\"needs\"];\n", sanitize(n), id)
		}
		fmt.Fprintf(&b, "  %s -> image;\n", id)
	}
	b.WriteString("}\n")
	return b.String()
}

func sanitize(s string) string {
	return strings.NewReplacer("-", "_", ".", "_").Replace(s)
}

func abbrev(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// SourcePolicy pins every image a Dockerfile build may pull to the digest
// in the lock, and denies any other image: an image the lock does not know
// fails the build instead of being pulled by tag.
func SourcePolicy(l *lock.Lock) *spb.Policy {
	pins := append([]lock.ImagePin(nil), l.Images...)
	if l.Frontend != nil {
		pins = append(pins, *l.Frontend)
	}
	if l.Base != nil && !l.Base.IsLayout() {
		pins = append(pins, *l.Base)
	}
	p := &spb.Policy{Rules: []*spb.Rule{{
		Action:   spb.PolicyAction_DENY,
		Selector: &spb.Selector{Identifier: "docker-image://*", MatchType: spb.MatchType_WILDCARD},
	}}}
	for _, pin := range pins {
		p.Rules = append(p.Rules, &spb.Rule{
			Action:   spb.PolicyAction_ALLOW,
			Selector: &spb.Selector{Identifier: "docker-image://" + pin.Pinned(), MatchType: spb.MatchType_EXACT},
		})
	}
	for _, pin := range pins {
		if strings.Contains(pin.Ref, "@") {
			continue // already a digest reference: allowed above when it matches
		}
		p.Rules = append(p.Rules, &spb.Rule{
			Action:   spb.PolicyAction_CONVERT,
			Selector: &spb.Selector{Identifier: "docker-image://" + pin.Ref, MatchType: spb.MatchType_EXACT},
			Updates:  &spb.Update{Identifier: "docker-image://" + pin.Pinned()},
		})
	}
	return p
}
