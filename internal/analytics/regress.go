package analytics

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Selector picks traces by their columns: version (the agent version from the trace's
// metadata), agent, environment and policy (a revision's hash), written as
// "version=2.1,environment=prod".
type Selector struct {
	Text   string
	fields [][2]string // column, value
}

var selectorColumns = map[string]string{"version": "agent_version", "agent_version": "agent_version", "agent": "agent", "environment": "environment", "env": "environment", "policy": "policy"}

// ParseSelector reads key=value pairs separated by commas.
func ParseSelector(s string) (Selector, error) {
	sel := Selector{Text: s}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		col, known := selectorColumns[strings.TrimSpace(k)]
		if !ok || !known || v == "" {
			return sel, fmt.Errorf("selector %q: expected key=value pairs with keys version, agent, environment or policy, as in version=2.1", s)
		}
		sel.fields = append(sel.fields, [2]string{col, strings.TrimSpace(v)})
	}
	return sel, nil
}

func (s Selector) where() (string, []any) {
	var conds []string
	var args []any
	for _, f := range s.fields {
		conds = append(conds, f[0]+" = ?")
		args = append(args, f[1])
	}
	return strings.Join(conds, " AND "), args
}

// RegressOptions compares a candidate's traces with a baseline's.
type RegressOptions struct {
	Baseline, Candidate Selector
	Range               Range   // zero for all time
	Alpha               float64 // significance level; zero means 0.05
	// MinTraces is the fewest traces each side needs. Zero means 30.
	MinTraces uint64
}

// Regression verdicts.
const (
	VerdictRegression  = "regression"
	VerdictImprovement = "improvement"
	VerdictNoChange    = "no significant change"
)

// Regress is the comparison of two sets of traces.
type Regress struct {
	Baseline  string     `json:"baseline"`
	Candidate string     `json:"candidate"`
	Traces    [2]uint64  `json:"traces"` // baseline, candidate
	Risk      RiskShift  `json:"risk"`
	Rules     []RuleRate `json:"rules"`
	Verdict   string     `json:"verdict"`
	Reasons   []string   `json:"reasons"`
}

// RiskShift compares the risk score distributions with the Mann–Whitney U test.
type RiskShift struct {
	BaselineMean  float64 `json:"baseline_mean"`
	CandidateMean float64 `json:"candidate_mean"`
	U             float64 `json:"u"`
	Z             float64 `json:"z"`
	// PHigher is the one-sided p-value that the candidate scores higher; PLower that it
	// scores lower.
	PHigher float64 `json:"p_higher"`
	PLower  float64 `json:"p_lower"`
	// Effect is P(candidate > baseline) + P(tie)/2: 0.5 for no shift.
	Effect float64 `json:"effect"`
}

// RuleRate compares how often a rule fires per trace.
type RuleRate struct {
	RuleID    string  `json:"rule_id"`
	Baseline  float64 `json:"baseline"`
	Candidate float64 `json:"candidate"`
	Z         float64 `json:"z"`
	PValue    float64 `json:"p_value"` // two-sided, Benjamini–Hochberg adjusted
	Change    string  `json:"change"`  // "worse", "better" or ""
}

func (o *RegressOptions) normalize() error {
	if len(o.Baseline.fields) == 0 || len(o.Candidate.fields) == 0 {
		return fmt.Errorf("regress needs --baseline and --candidate, as in version=2.0")
	}
	if o.Alpha <= 0 {
		o.Alpha = 0.05
	}
	if o.MinTraces == 0 {
		o.MinTraces = 30
	}
	return nil
}

// RegressQueries are the queries RunRegress runs: for each side, its risk score histogram
// and the traces violating each rule.
func RegressQueries(o RegressOptions) ([]Query, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	var out []Query
	for _, side := range []struct {
		name string
		sel  Selector
	}{{"baseline", o.Baseline}, {"candidate", o.Candidate}} {
		where, args := side.sel.where()
		tWhere, tArgs, vWhere, vArgs := where, args, where, slices.Clone(args)
		if !o.Range.To.IsZero() {
			tWhere += " AND first_step_at >= ? AND first_step_at < ?"
			tArgs = append(slices.Clone(args), utc(o.Range.From), utc(o.Range.To))
			vWhere += " AND ts >= ? AND ts < ?"
			vArgs = append(vArgs, utc(o.Range.From), utc(o.Range.To))
		}
		out = append(out,
			Query{side.name + " risk", "SELECT risk_score, count() AS n FROM traces FINAL WHERE " + tWhere + " GROUP BY risk_score ORDER BY risk_score", tArgs},
			Query{side.name + " rules", "SELECT rule_id, uniqExact(trace_id, run) AS traces FROM violations FINAL WHERE " + vWhere + " GROUP BY rule_id ORDER BY rule_id", vArgs},
		)
	}
	return out, nil
}

// RunRegress compares the candidate with the baseline and gives a verdict: a regression
// when the candidate's risk scores are significantly higher or any rule fires in
// significantly more of its traces.
func RunRegress(ctx context.Context, conn driver.Conn, o RegressOptions) (*Regress, error) {
	qs, err := RegressQueries(o)
	if err != nil {
		return nil, err
	}
	_ = o.normalize()
	risk := [2]map[int]uint64{{}, {}}
	rules := [2]map[string]uint64{{}, {}}
	for side := range 2 {
		if err := rows(ctx, conn, qs[2*side], func(r driver.Rows) error {
			var score uint8
			var n uint64
			if err := r.Scan(&score, &n); err != nil {
				return err
			}
			risk[side][int(score)] = n
			return nil
		}); err != nil {
			return nil, err
		}
		if err := rows(ctx, conn, qs[2*side+1], func(r driver.Rows) error {
			var rule string
			var n uint64
			if err := r.Scan(&rule, &n); err != nil {
				return err
			}
			rules[side][rule] = n
			return nil
		}); err != nil {
			return nil, err
		}
	}
	out := &Regress{Baseline: o.Baseline.Text, Candidate: o.Candidate.Text, Traces: [2]uint64{total(risk[0]), total(risk[1])}, Rules: []RuleRate{}, Reasons: []string{}}
	for side, sel := range []Selector{o.Baseline, o.Candidate} {
		if out.Traces[side] < o.MinTraces {
			return nil, fmt.Errorf("%d traces match %s; need at least %d to compare", out.Traces[side], sel.Text, o.MinTraces)
		}
	}
	nb, nc := out.Traces[0], out.Traces[1]
	u, z, pHigher, effect := MannWhitney(risk[0], risk[1])
	_, _, pLower, _ := MannWhitney(risk[1], risk[0])
	out.Risk = RiskShift{BaselineMean: mean(risk[0]), CandidateMean: mean(risk[1]), U: u, Z: z, PHigher: pHigher, PLower: pLower, Effect: effect}

	names := map[string]bool{}
	for side := range 2 {
		for r := range rules[side] {
			names[r] = true
		}
	}
	for r := range names {
		xb, xc := min(rules[0][r], nb), min(rules[1][r], nc)
		z, p := TwoProportion(xb, nb, xc, nc)
		out.Rules = append(out.Rules, RuleRate{RuleID: r, Baseline: float64(xb) / float64(nb), Candidate: float64(xc) / float64(nc), Z: z, PValue: p})
	}
	slices.SortFunc(out.Rules, func(a, b RuleRate) int { return strings.Compare(a.RuleID, b.RuleID) })
	p := make([]float64, len(out.Rules))
	for i := range out.Rules {
		p[i] = out.Rules[i].PValue
	}
	worse, better := false, false
	for i, adj := range BenjaminiHochberg(p) {
		r := &out.Rules[i]
		r.PValue = adj
		if adj < o.Alpha {
			if r.Z > 0 {
				r.Change, worse = "worse", true
				out.Reasons = append(out.Reasons, fmt.Sprintf("%s fires in %.1f%% of traces, up from %.1f%% (adjusted p %.3g)", r.RuleID, 100*r.Candidate, 100*r.Baseline, adj))
			} else {
				r.Change, better = "better", true
			}
		}
	}
	if pHigher < o.Alpha {
		worse = true
		out.Reasons = append(out.Reasons, fmt.Sprintf("risk scores are higher: mean %.1f, up from %.1f (Mann–Whitney p %.3g)", out.Risk.CandidateMean, out.Risk.BaselineMean, pHigher))
	} else if pLower < o.Alpha {
		better = true
	}
	switch {
	case worse:
		out.Verdict = VerdictRegression
	case better:
		out.Verdict = VerdictImprovement
	default:
		out.Verdict = VerdictNoChange
	}
	return out, nil
}
