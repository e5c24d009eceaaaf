package analytics

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// JensenShannon is the Jensen–Shannon divergence of two distributions given as counts over
// the same categories, in bits: 0 for the same shape, 1 for disjoint ones. Either side
// without any count gives NaN.
func JensenShannon(p, q []float64) float64 {
	sp, sq := floats.Sum(p), floats.Sum(q)
	if sp == 0 || sq == 0 {
		return math.NaN()
	}
	pn, qn := make([]float64, len(p)), make([]float64, len(q))
	floats.ScaleTo(pn, 1/sp, p)
	floats.ScaleTo(qn, 1/sq, q)
	return max(0, stat.JensenShannon(pn, qn)/math.Ln2) // never below 0 by rounding
}

// psiFloor stands in for an empty bin's share, so the index stays finite.
const psiFloor = 1e-4

// PSI is the population stability index of a numeric quantity, from two histograms: value
// → count for the baseline and for the window. The bins are the baseline's deciles, so
// each holds about a tenth of the baseline. Below 0.1 is usually read as no shift, above
// 0.25 as a major one.
func PSI(baseline, window map[int]uint64) float64 {
	edges := decileEdges(baseline)
	if edges == nil || total(window) == 0 {
		return math.NaN()
	}
	b, w := bin(baseline, edges), bin(window, edges)
	tb, tw := total(baseline), total(window)
	psi := 0.0
	for i := range b {
		pb := max(float64(b[i])/float64(tb), psiFloor)
		pw := max(float64(w[i])/float64(tw), psiFloor)
		psi += (pw - pb) * math.Log(pw/pb)
	}
	return psi
}

func total(h map[int]uint64) uint64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	return n
}

// decileEdges returns the upper bounds of up to ten bins holding about a tenth of the
// histogram each; values above the last edge fall in the last bin.
func decileEdges(h map[int]uint64) []int {
	n := total(h)
	if n == 0 {
		return nil
	}
	values := make([]int, 0, len(h))
	for v := range h {
		values = append(values, v)
	}
	slices.Sort(values)
	var edges []int
	var cum uint64
	next := 1
	for _, v := range values {
		cum += h[v]
		for next <= 10 && float64(cum) >= float64(n)*float64(next)/10 {
			if len(edges) == 0 || edges[len(edges)-1] != v {
				edges = append(edges, v)
			}
			next++
		}
	}
	return edges
}

func bin(h map[int]uint64, edges []int) []uint64 {
	out := make([]uint64, len(edges))
	for v, c := range h {
		i, _ := slices.BinarySearch(edges, v)
		out[min(i, len(edges)-1)] += c
	}
	return out
}

// TwoProportion tests whether two rates differ: x1 of n1 against x2 of n2, with the
// pooled two-proportion z-test. It returns z (positive when the second rate is higher) and
// the two-sided p-value; p is 1 when either side is empty or nothing varies.
func TwoProportion(x1, n1, x2, n2 uint64) (z, p float64) {
	if n1 == 0 || n2 == 0 {
		return 0, 1
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	pool := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 0, 1
	}
	z = (p2 - p1) / se
	return z, 2 * distuv.UnitNormal.Survival(math.Abs(z))
}

// BenjaminiHochberg adjusts p-values for testing many hypotheses at once, controlling the
// false discovery rate: compare the adjusted values with the level as they are.
func BenjaminiHochberg(p []float64) []float64 {
	n := len(p)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case p[a] < p[b]:
			return -1
		case p[a] > p[b]:
			return 1
		}
		return 0
	})
	adj := make([]float64, n)
	prev := 1.0
	for k := n - 1; k >= 0; k-- {
		i := order[k]
		v := min(prev, p[i]*float64(n)/float64(k+1))
		adj[i], prev = v, v
	}
	return adj
}

// MannWhitney compares two samples of integer scores given as histograms (score →
// count) with the Mann–Whitney U test, normal approximation with tie correction. It
// returns U of the second sample, z (positive when the second tends higher), the
// one-sided p-value that the second is stochastically greater, and the common-language
// effect size P(second > first) + P(tie)/2.
func MannWhitney(first, second map[int]uint64) (u, z, pGreater, effect float64) {
	n1, n2 := float64(total(first)), float64(total(second))
	if n1 == 0 || n2 == 0 {
		return 0, 0, 1, 0.5
	}
	scores := map[int]bool{}
	for v := range first {
		scores[v] = true
	}
	for v := range second {
		scores[v] = true
	}
	values := make([]int, 0, len(scores))
	for v := range scores {
		values = append(values, v)
	}
	slices.Sort(values)
	// Average ranks over ties, summed for the second sample.
	var rank, r2, ties float64
	for _, v := range values {
		t := float64(first[v] + second[v])
		avg := rank + (t+1)/2
		r2 += avg * float64(second[v])
		ties += t*t*t - t
		rank += t
	}
	u = r2 - n2*(n2+1)/2
	n := n1 + n2
	mean := n1 * n2 / 2
	sd := math.Sqrt(n1 * n2 / 12 * ((n + 1) - ties/(n*(n-1))))
	effect = u / (n1 * n2)
	if sd == 0 {
		return u, 0, 1, effect
	}
	// Continuity correction towards the mean.
	d := u - mean
	d -= math.Copysign(min(0.5, math.Abs(d)), d)
	z = d / sd
	return u, z, distuv.UnitNormal.Survival(z), effect
}
