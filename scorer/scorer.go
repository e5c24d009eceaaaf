// Package scorer computes risk scores: min(100, the sum of the weights of the distinct
// rules violated). A rule violated at many steps counts once.
//
// It imports schemas only.
package scorer

import "github.com/troy-audit/troy/schemas"

// MaxScore caps the risk score.
const MaxScore = 100

// UnknownWeight is the weight of a violated rule the weights do not name, as in the Python
// tool.
const UnknownWeight = 10

// Score is the risk score of a set of violations under the given rule weights.
func Score(violations []schemas.Violation, weights map[string]int) int {
	a := NewAccumulator(weights)
	for _, v := range violations {
		a.Add(v.RuleID)
	}
	return a.Score()
}

// ScoreRules is the risk score of violations of the given rules.
func ScoreRules(rules []string, weights map[string]int) int {
	a := NewAccumulator(weights)
	for _, r := range rules {
		a.Add(r)
	}
	return a.Score()
}

// Accumulator keeps a running risk score as violations arrive, as the guard needs.
type Accumulator struct {
	weights map[string]int
	seen    map[string]bool
	total   int
}

// NewAccumulator starts a score at zero.
func NewAccumulator(weights map[string]int) *Accumulator {
	return &Accumulator{weights: weights, seen: map[string]bool{}}
}

// Add records a violation of the rule; a rule already seen adds nothing.
func (a *Accumulator) Add(ruleID string) {
	if a.seen[ruleID] {
		return
	}
	a.seen[ruleID] = true
	w, ok := a.weights[ruleID]
	if !ok {
		w = UnknownWeight
	}
	a.total += w
}

// Score is min(MaxScore, the sum of the weights of the distinct rules seen).
func (a *Accumulator) Score() int { return min(MaxScore, a.total) }
