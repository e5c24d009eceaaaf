package scorer

import (
	"testing"

	"github.com/troy-audit/troy/schemas"
)

func TestScore(t *testing.T) {
	weights := map[string]int{"a": 50, "b": 40, "c": 30, "zero": 0}
	v := func(ids ...string) []schemas.Violation {
		var out []schemas.Violation
		for _, id := range ids {
			out = append(out, schemas.Violation{RuleID: id})
		}
		return out
	}
	tests := []struct {
		name string
		vs   []schemas.Violation
		want int
	}{
		{"none", nil, 0},
		{"one", v("c"), 30},
		{"a rule counts once however often it fires", v("c", "c", "c"), 30},
		{"distinct rules add up", v("b", "c"), 70},
		{"capped at 100", v("a", "b", "c"), 100},
		{"zero weight", v("zero"), 0},
		{"a rule the weights do not know weighs 10", v("unknown"), 10},
	}
	for _, tc := range tests {
		if got := Score(tc.vs, weights); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestAccumulator(t *testing.T) {
	a := NewAccumulator(map[string]int{"x": 60, "y": 60})
	a.Add("x")
	a.Add("x")
	if a.Score() != 60 {
		t.Fatalf("got %d", a.Score())
	}
	a.Add("y")
	if a.Score() != 100 {
		t.Fatalf("got %d", a.Score())
	}
}
