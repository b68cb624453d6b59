package gem

import (
	"slices"
	"sort"
)

// Step is one install step of the per-gem (Nix/bundix style) install:
// usually one gem; the gems of a dependency cycle together.
type Step struct {
	// Gems are installed together in this step (more than one only for a
	// dependency cycle), sorted.
	Gems []string `json:"gems"`
	// Deps are every gem these need at run time, transitively, outside
	// the step itself, sorted: the installs to have present (GEM_PATH)
	// when this step runs, e.g. when a native extension's extconf.rb
	// requires one of them.
	Deps []string `json:"deps,omitempty"`
	// Layer is 0 for steps without dependencies, else one more than the
	// highest layer of a dependency: steps of one layer are independent
	// of each other.
	Layer int `json:"layer"`
}

// graph is the gem dependency graph of a Set: every gem (rubygems, git,
// path) and its runtime dependencies' names.
type graph struct {
	deps  map[string][]string
	steps []Step
	step  map[string]int // gem → index in steps
	trans map[string][]string
}

func newGraph() *graph { return &graph{deps: map[string][]string{}} }

func (g *graph) add(name string, deps []string) { g.deps[name] = deps }

func (g *graph) has(name string) bool {
	if g == nil {
		return false
	}
	_, ok := g.deps[name]
	return ok
}

// finish computes strongly connected components (Tarjan), their layers
// and transitive dependencies.
func (g *graph) finish() {
	names := make([]string, 0, len(g.deps))
	for n := range g.deps {
		names = append(names, n)
	}
	sort.Strings(names)
	index := map[string]int{}
	low := map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var sccs [][]string
	next := 0
	var visit func(n string)
	visit = func(n string) {
		index[n], low[n] = next, next
		next++
		stack = append(stack, n)
		onStack[n] = true
		for _, d := range g.deps[n] {
			if _, ok := g.deps[d]; !ok {
				continue
			}
			if _, seen := index[d]; !seen {
				visit(d)
				low[n] = min(low[n], low[d])
			} else if onStack[d] {
				low[n] = min(low[n], index[d])
			}
		}
		if low[n] == index[n] {
			var scc []string
			for {
				m := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[m] = false
				scc = append(scc, m)
				if m == n {
					break
				}
			}
			sort.Strings(scc)
			sccs = append(sccs, scc)
		}
	}
	for _, n := range names {
		if _, seen := index[n]; !seen {
			visit(n)
		}
	}
	// Tarjan emits a component after every component it reaches:
	// dependencies first.
	comp := map[string]int{}
	for i, scc := range sccs {
		for _, n := range scc {
			comp[n] = i
		}
	}
	// transitive dependencies as bitsets over the sorted names
	idx := make(map[string]int, len(names))
	for i, n := range names {
		idx[n] = i
	}
	words := (len(names) + 63) / 64
	layers := make([]int, len(sccs))
	trans := make([][]uint64, len(sccs))
	for i, scc := range sccs {
		trans[i] = make([]uint64, words)
		for _, n := range scc {
			for _, d := range g.deps[n] {
				j, ok := comp[d]
				if !ok || j == i {
					continue
				}
				layers[i] = max(layers[i], layers[j]+1)
				for _, m := range sccs[j] {
					k := idx[m]
					trans[i][k/64] |= 1 << (k % 64)
				}
				for w := range trans[j] {
					trans[i][w] |= trans[j][w]
				}
			}
		}
	}
	g.steps = make([]Step, len(sccs))
	for i, scc := range sccs {
		var ds []string
		for w, bits := range trans[i] {
			for b := 0; bits != 0; b++ {
				if bits&1 != 0 {
					ds = append(ds, names[w*64+b])
				}
				bits >>= 1
			}
		}
		g.steps[i] = Step{Gems: scc, Deps: ds, Layer: layers[i]}
	}
	sort.SliceStable(g.steps, func(a, b int) bool {
		if g.steps[a].Layer != g.steps[b].Layer {
			return g.steps[a].Layer < g.steps[b].Layer
		}
		return g.steps[a].Gems[0] < g.steps[b].Gems[0]
	})
	g.step = map[string]int{}
	g.trans = map[string][]string{}
	for i, st := range g.steps {
		for _, n := range st.Gems {
			g.step[n] = i
			// a gem in a cycle needs the rest of its cycle too
			all := slices.Clone(st.Deps)
			for _, m := range st.Gems {
				if m != n {
					all = append(all, m)
				}
			}
			sort.Strings(all)
			g.trans[n] = all
		}
	}
}

// Order returns the install steps, dependencies before dependents,
// sorted by layer then name.
func (s *Set) Order() []Step {
	out := make([]Step, len(s.graph.steps))
	for i, st := range s.graph.steps {
		out[i] = Step{Gems: slices.Clone(st.Gems), Deps: slices.Clone(st.Deps), Layer: st.Layer}
	}
	return out
}

// Layers groups the gems by layer: every gem's dependencies are in
// earlier layers (or, for a cycle, in the same step).
func (s *Set) Layers() [][]string {
	var out [][]string
	for _, st := range s.graph.steps {
		for len(out) <= st.Layer {
			out = append(out, nil)
		}
		out[st.Layer] = append(out[st.Layer], st.Gems...)
	}
	for _, l := range out {
		sort.Strings(l)
	}
	return out
}

// TransitiveDeps returns every gem name has a runtime need of
// (dependencies of dependencies, and the rest of its cycle), sorted; nil
// for a gem not in the set.
func (s *Set) TransitiveDeps(name string) []string {
	return slices.Clone(s.graph.trans[name])
}

// DirectDeps returns the names of a gem's runtime dependencies in the
// set, sorted.
func (s *Set) DirectDeps(name string) []string {
	return slices.Clone(s.graph.deps[name])
}

// Cycles returns the dependency cycles (gems that depend on each other,
// or on themselves), each sorted. Bundler installs such gems; the
// per-gem install puts each cycle in one Step.
func (s *Set) Cycles() [][]string {
	var out [][]string
	for _, st := range s.graph.steps {
		if len(st.Gems) > 1 || slices.Contains(s.graph.deps[st.Gems[0]], st.Gems[0]) {
			out = append(out, slices.Clone(st.Gems))
		}
	}
	return out
}
