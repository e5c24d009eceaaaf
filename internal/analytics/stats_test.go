package analytics

import (
	"math"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestJensenShannon(t *testing.T) {
	tests := []struct {
		name string
		p, q []float64
		want float64
	}{
		{"same shape, other scale", []float64{1, 2, 3}, []float64{10, 20, 30}, 0},
		{"disjoint", []float64{5, 0}, []float64{0, 7}, 1},
		{"half", []float64{1, 0}, []float64{1, 1}, 0.3113},
	}
	for _, tt := range tests {
		if got := JensenShannon(tt.p, tt.q); !near(got, tt.want, 1e-4) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if !math.IsNaN(JensenShannon([]float64{0, 0}, []float64{1, 1})) {
		t.Error("an empty side must give NaN")
	}
}

func TestPSI(t *testing.T) {
	base := map[int]uint64{}
	same := map[int]uint64{}
	shifted := map[int]uint64{}
	for v := 5; v < 15; v++ {
		base[v] = 100
		same[v] = 50
		shifted[v+6] = 100
	}
	if got := PSI(base, same); !near(got, 0, 1e-9) {
		t.Errorf("same distribution: %v", got)
	}
	if got := PSI(base, shifted); got < 0.25 {
		t.Errorf("shifted distribution: %v, want a major shift", got)
	}
	if !math.IsNaN(PSI(map[int]uint64{}, same)) {
		t.Error("an empty baseline must give NaN")
	}
}

func TestTwoProportion(t *testing.T) {
	z, p := TwoProportion(10, 100, 20, 100)
	if !near(z, 1.980, 1e-3) || !near(p, 0.0477, 1e-3) {
		t.Errorf("z %v p %v", z, p)
	}
	if _, p := TwoProportion(0, 0, 3, 10); p != 1 {
		t.Errorf("empty side: p %v", p)
	}
	if _, p := TwoProportion(0, 10, 0, 10); p != 1 {
		t.Errorf("no variation: p %v", p)
	}
}

func TestBenjaminiHochberg(t *testing.T) {
	got := BenjaminiHochberg([]float64{0.01, 0.04, 0.03, 0.005})
	want := []float64{0.02, 0.04, 0.04, 0.02}
	for i := range want {
		if !near(got[i], want[i], 1e-12) {
			t.Fatalf("%v, want %v", got, want)
		}
	}
}

func TestMannWhitney(t *testing.T) {
	tests := []struct {
		name          string
		a, b          map[int]uint64
		u, p, effect  float64
		wantPositiveZ bool
	}{
		// scipy.stats.mannwhitneyu([4,5,6], [1,2,3], alternative='greater', method='asymptotic')
		{"all higher", map[int]uint64{1: 1, 2: 1, 3: 1}, map[int]uint64{4: 1, 5: 1, 6: 1}, 9, 0.0405, 1, true},
		{"identical", map[int]uint64{10: 5, 20: 5}, map[int]uint64{10: 5, 20: 5}, 50, 0.5, 0.5, false},
	}
	for _, tt := range tests {
		u, z, p, effect := MannWhitney(tt.a, tt.b)
		if u != tt.u || !near(p, tt.p, 1e-3) || !near(effect, tt.effect, 1e-9) || (z > 0) != tt.wantPositiveZ {
			t.Errorf("%s: u %v z %v p %v effect %v", tt.name, u, z, p, effect)
		}
	}
}
