package patch

// Line diff: Myers' O(ND) algorithm with the linear-space "middle snake"
// refinement, in the style of GNU diff's diffseq.h. Before diffing, lines
// that occur on only one side are marked changed and dropped (they can
// never be part of a common subsequence), which makes wholesale rewrites
// cheap. A cost limit bounds the search on pathological input; past it
// the result is still a correct edit script, just not a minimal one.

// maxCost bounds the number of edit steps explored per split.
const maxCost = 1024

// lineDiff compares a and b and returns, for each line of a, whether it is
// removed, and for each line of b, whether it is added.
func lineDiff(a, b []string) (removed, added []bool) {
	removed = make([]bool, len(a))
	added = make([]bool, len(b))

	// Intern lines.
	ids := map[string]int{}
	intern := func(ls []string) []int {
		out := make([]int, len(ls))
		for i, l := range ls {
			id, ok := ids[l]
			if !ok {
				id = len(ids)
				ids[l] = id
			}
			out[i] = id
		}
		return out
	}
	ai, bi := intern(a), intern(b)
	inA := make([]bool, len(ids))
	inB := make([]bool, len(ids))
	for _, id := range ai {
		inA[id] = true
	}
	for _, id := range bi {
		inB[id] = true
	}
	// Keep only lines present on both sides; remember where they came from.
	var xs, ys []int
	var xIdx, yIdx []int
	for i, id := range ai {
		if inB[id] {
			xs = append(xs, id)
			xIdx = append(xIdx, i)
		} else {
			removed[i] = true
		}
	}
	for j, id := range bi {
		if inA[id] {
			ys = append(ys, id)
			yIdx = append(yIdx, j)
		} else {
			added[j] = true
		}
	}
	d := &differ{a: xs, b: ys, ach: make([]bool, len(xs)), bch: make([]bool, len(ys))}
	n := len(xs) + len(ys) + 3
	d.fd = make([]int, n)
	d.bd = make([]int, n)
	d.off = len(ys) + 1
	d.compare(0, len(xs), 0, len(ys))
	for i, c := range d.ach {
		if c {
			removed[xIdx[i]] = true
		}
	}
	for j, c := range d.bch {
		if c {
			added[yIdx[j]] = true
		}
	}
	return removed, added
}

type differ struct {
	a, b     []int
	ach, bch []bool
	fd, bd   []int // furthest x on each diagonal k, at index k+off
	off      int
}

func (d *differ) compare(xoff, xlim, yoff, ylim int) {
	for {
		for xoff < xlim && yoff < ylim && d.a[xoff] == d.b[yoff] {
			xoff++
			yoff++
		}
		for xlim > xoff && ylim > yoff && d.a[xlim-1] == d.b[ylim-1] {
			xlim--
			ylim--
		}
		if xoff == xlim {
			for y := yoff; y < ylim; y++ {
				d.bch[y] = true
			}
			return
		}
		if yoff == ylim {
			for x := xoff; x < xlim; x++ {
				d.ach[x] = true
			}
			return
		}
		x, y := d.split(xoff, xlim, yoff, ylim)
		// Recurse on the smaller half, loop on the other.
		if (x-xoff)+(y-yoff) < (xlim-x)+(ylim-y) {
			d.compare(xoff, x, yoff, y)
			xoff, yoff = x, y
		} else {
			d.compare(x, xlim, y, ylim)
			xlim, ylim = x, y
		}
	}
}

// split finds a point (x, y) on an optimal (or, past maxCost, a good)
// path from (xoff, yoff) to (xlim, ylim) that divides the problem in two
// strictly smaller ones. The caller has stripped common prefixes and
// suffixes, so both ranges are non-empty and differ at both ends.
func (d *differ) split(xoff, xlim, yoff, ylim int) (int, int) {
	fd, bd, off := d.fd, d.bd, d.off
	dmin, dmax := xoff-ylim, xlim-yoff
	fmid, bmid := xoff-yoff, xlim-ylim
	fmin, fmax, bmin, bmax := fmid, fmid, bmid, bmid
	odd := (fmid-bmid)&1 != 0
	fd[off+fmid] = xoff
	bd[off+bmid] = xlim
	const inf = int(^uint(0) >> 1)
	for c := 1; ; c++ {
		// Extend the forward paths by one edit.
		if fmin > dmin {
			fmin--
			fd[off+fmin-1] = -1
		} else {
			fmin++
		}
		if fmax < dmax {
			fmax++
			fd[off+fmax+1] = -1
		} else {
			fmax--
		}
		for k := fmax; k >= fmin; k -= 2 {
			tlo, thi := fd[off+k-1], fd[off+k+1]
			x := thi
			if tlo >= thi {
				x = tlo + 1
			}
			y := x - k
			for x < xlim && y < ylim && d.a[x] == d.b[y] {
				x++
				y++
			}
			fd[off+k] = x
			if odd && bmin <= k && k <= bmax && bd[off+k] <= x {
				return x, y
			}
		}
		// Extend the backward paths by one edit.
		if bmin > dmin {
			bmin--
			bd[off+bmin-1] = inf
		} else {
			bmin++
		}
		if bmax < dmax {
			bmax++
			bd[off+bmax+1] = inf
		} else {
			bmax--
		}
		for k := bmax; k >= bmin; k -= 2 {
			tlo, thi := bd[off+k-1], bd[off+k+1]
			x := thi - 1
			if tlo < thi {
				x = tlo
			}
			y := x - k
			for x > xoff && y > yoff && d.a[x-1] == d.b[y-1] {
				x--
				y--
			}
			bd[off+k] = x
			if !odd && fmin <= k && k <= fmax && x <= fd[off+k] {
				return x, y
			}
		}
		if c >= maxCost {
			// Too expensive: take the forward point that got furthest.
			bestX, bestY, best := -1, -1, -1
			for k := fmax; k >= fmin; k -= 2 {
				x := min(fd[off+k], xlim)
				y := x - k
				if y > ylim {
					x, y = ylim+k, ylim
				}
				if x < xoff || y < yoff {
					continue
				}
				if x+y > best && (x > xoff || y > yoff) && (x < xlim || y < ylim) {
					bestX, bestY, best = x, y, x+y
				}
			}
			if best >= 0 {
				return bestX, bestY
			}
		}
	}
}

// editKind is one step of an edit script.
type editKind byte

const (
	editEqual  editKind = ' '
	editDelete editKind = '-'
	editInsert editKind = '+'
)

type edit struct {
	kind editKind
	a, b int // line indexes in a (equal, delete) and b (equal, insert)
}

// editScript turns lineDiff's marks into an ordered edit script, deletions
// before insertions within each change.
func editScript(removed, added []bool) []edit {
	var out []edit
	i, j := 0, 0
	for i < len(removed) || j < len(added) {
		switch {
		case i < len(removed) && removed[i]:
			out = append(out, edit{editDelete, i, j})
			i++
		case j < len(added) && added[j]:
			out = append(out, edit{editInsert, i, j})
			j++
		default:
			out = append(out, edit{editEqual, i, j})
			i++
			j++
		}
	}
	return out
}

// countChanges returns the number of lines added to and removed from a to
// get b.
func countChanges(a, b []string) (added, removed int) {
	rm, ad := lineDiff(a, b)
	for _, r := range rm {
		if r {
			removed++
		}
	}
	for _, x := range ad {
		if x {
			added++
		}
	}
	return added, removed
}
