// Package compare finds what changed between two runs of an agent: two traces, or two
// audit results. Steps are aligned by step id, or by order and description when the ids
// do not match; the comparison lists steps added, removed and changed (and which fields),
// violations that appeared or disappeared, and the change of risk.
package compare

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
	"github.com/troy-audit/troy/scorer"
)

// Side is one of the two things compared.
type Side struct {
	Name       string
	Trace      *schemas.Trace
	Violations []schemas.Violation
	Risk       int
	// Results says whether Violations and Risk are known: an audit has them, a trace has
	// them once evaluated with a policy.
	Results bool
}

// Load reads an audit.json or a trace file (one trace).
func Load(ctx context.Context, path string) (*Side, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var probe map[string]json.RawMessage
	if pyjson.Unmarshal(data, &probe) == nil && probe["trace"] != nil {
		a, err := ingest.DecodeAudit(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &Side{Name: path, Trace: a.Trace, Violations: a.Violations, Risk: a.RiskScore, Results: true}, nil
	}
	t, err := ingest.LoadTrace(ctx, path, ingest.Options{})
	if err != nil {
		return nil, err
	}
	return &Side{Name: path, Trace: t}, nil
}

// Evaluate gives a side the results of a policy, replacing any it had.
func (s *Side) Evaluate(c *evaluator.Compiled) {
	res := c.Evaluate(s.Trace)
	s.Violations, s.Risk, s.Results = res.Violations, scorer.Score(res.Violations, c.Weights()), true
}

// Step statuses.
const (
	Same    = "same"
	Changed = "changed"
	Added   = "added"
	Removed = "removed"
)

// StepChange is one aligned step.
type StepChange struct {
	Status string   `json:"status"`
	A      int      `json:"a"` // 1-based position in A; 0 when added
	B      int      `json:"b"` // 1-based position in B; 0 when removed
	StepID string   `json:"step_id"`
	Type   string   `json:"type"`
	Desc   string   `json:"description"`
	Fields []string `json:"fields,omitempty"` // what changed
}

// ViolationChange is a violation found on one side only.
type ViolationChange struct {
	RuleID   string `json:"rule_id"`
	Severity string `json:"severity"`
	StepID   string `json:"step_id"`
	Step     int    `json:"step"` // 1-based position on its side
}

// Diff is the comparison.
type Diff struct {
	Files       [2]string         `json:"files"`
	AlignedBy   string            `json:"aligned_by"` // "step_id" or "order"
	Steps       []StepChange      `json:"steps"`
	Counts      map[string]int    `json:"counts"`
	Appeared    []ViolationChange `json:"violations_appeared"`
	Disappeared []ViolationChange `json:"violations_disappeared"`
	Results     bool              `json:"results"` // violations and risk are known on both sides
	RiskA       int               `json:"risk_a"`
	RiskB       int               `json:"risk_b"`
	RiskDelta   int               `json:"risk_delta"`
}

// RiskRose reports whether B is riskier than A.
func (d *Diff) RiskRose() bool { return d.Results && d.RiskB > d.RiskA }

// Compare aligns B's steps with A's and lists the differences.
func Compare(a, b *Side) *Diff {
	d := &Diff{Files: [2]string{a.Name, b.Name}, Counts: map[string]int{}, Appeared: []ViolationChange{}, Disappeared: []ViolationChange{}}
	pairs, by := align(a.Trace.Steps, b.Trace.Steps)
	d.AlignedBy = by
	for _, p := range pairs {
		c := StepChange{A: p.a + 1, B: p.b + 1}
		switch {
		case p.a < 0:
			st := b.Trace.Steps[p.b]
			c.Status, c.StepID, c.Type, c.Desc = Added, st.StepID, st.Type, st.Description
		case p.b < 0:
			st := a.Trace.Steps[p.a]
			c.Status, c.StepID, c.Type, c.Desc = Removed, st.StepID, st.Type, st.Description
		default:
			sa, sb := a.Trace.Steps[p.a], b.Trace.Steps[p.b]
			c.StepID, c.Type, c.Desc = sb.StepID, sb.Type, sb.Description
			c.Fields = changedFields(sa, sb)
			c.Status = Same
			if len(c.Fields) > 0 {
				c.Status = Changed
			}
		}
		d.Counts[c.Status]++
		d.Steps = append(d.Steps, c)
	}
	d.Results = a.Results && b.Results
	if d.Results {
		d.RiskA, d.RiskB, d.RiskDelta = a.Risk, b.Risk, b.Risk-a.Risk
		// A violation is the same on both sides when its rule fires at aligned steps.
		key := map[int]int{} // position in A → position in B
		for _, p := range pairs {
			if p.a >= 0 && p.b >= 0 {
				key[p.a] = p.b
			}
		}
		posA, posB := positions(a.Trace), positions(b.Trace)
		inB := map[string]bool{}
		for _, v := range b.Violations {
			inB[fmt.Sprint(posB[v.StepID], "\x00", v.RuleID)] = true
		}
		inA := map[string]bool{}
		for _, v := range a.Violations {
			pb, ok := key[posA[v.StepID]]
			k := fmt.Sprint(pb, "\x00", v.RuleID)
			if ok {
				inA[k] = true
			}
			if !ok || !inB[k] {
				d.Disappeared = append(d.Disappeared, ViolationChange{RuleID: v.RuleID, Severity: v.Severity, StepID: v.StepID, Step: posA[v.StepID] + 1})
			}
		}
		for _, v := range b.Violations {
			if !inA[fmt.Sprint(posB[v.StepID], "\x00", v.RuleID)] {
				d.Appeared = append(d.Appeared, ViolationChange{RuleID: v.RuleID, Severity: v.Severity, StepID: v.StepID, Step: posB[v.StepID] + 1})
			}
		}
	}
	return d
}

func positions(t *schemas.Trace) map[string]int {
	pos := map[string]int{}
	for i, st := range t.Steps {
		if _, ok := pos[st.StepID]; !ok {
			pos[st.StepID] = i
		}
	}
	return pos
}

type pair struct{ a, b int }

// align pairs the steps of A and B. When most of A's step ids are in B, steps pair by id;
// otherwise by order, matching type and description, looking a little ahead for a step
// that was inserted or dropped.
func align(a, b []*schemas.Step) ([]pair, string) {
	posB := map[string]int{}
	for i, st := range b {
		if _, ok := posB[st.StepID]; !ok {
			posB[st.StepID] = i
		}
	}
	shared := 0
	for _, st := range a {
		if _, ok := posB[st.StepID]; ok {
			shared++
		}
	}
	if len(a) > 0 && shared*2 >= len(a) {
		return alignByID(a, b, posB), "step_id"
	}
	return alignByOrder(a, b), "order"
}

func alignByID(a, b []*schemas.Step, posB map[string]int) []pair {
	var out []pair
	used := make([]bool, len(b))
	j := 0
	for i, st := range a {
		pb, ok := posB[st.StepID]
		if !ok || used[pb] {
			out = append(out, pair{i, -1})
			continue
		}
		for ; j < pb; j++ { // B's steps before this one that pair with nothing earlier
			if !used[j] && !inA(a, b[j].StepID) {
				out = append(out, pair{-1, j})
				used[j] = true
			}
		}
		out = append(out, pair{i, pb})
		used[pb] = true
	}
	for k := range b {
		if !used[k] {
			out = append(out, pair{-1, k})
		}
	}
	return out
}

func inA(a []*schemas.Step, id string) bool {
	for _, st := range a {
		if st.StepID == id {
			return true
		}
	}
	return false
}

// lookAhead bounds how far alignment by order searches for a matching step.
const lookAhead = 20

func alignByOrder(a, b []*schemas.Step) []pair {
	same := func(x, y *schemas.Step) bool { return x.Type == y.Type && x.Description == y.Description }
	var out []pair
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if same(a[i], b[j]) {
			out = append(out, pair{i, j})
			i, j = i+1, j+1
			continue
		}
		// Steps inserted in B before A's step?
		if k := find(b, j, func(s *schemas.Step) bool { return same(a[i], s) }); k >= 0 {
			for ; j < k; j++ {
				out = append(out, pair{-1, j})
			}
			continue
		}
		// A's step dropped from B?
		if k := find(a, i, func(s *schemas.Step) bool { return same(s, b[j]) }); k >= 0 {
			for ; i < k; i++ {
				out = append(out, pair{i, -1})
			}
			continue
		}
		out = append(out, pair{i, j}) // the same place, changed
		i, j = i+1, j+1
	}
	for ; i < len(a); i++ {
		out = append(out, pair{i, -1})
	}
	for ; j < len(b); j++ {
		out = append(out, pair{-1, j})
	}
	return out
}

func find(steps []*schemas.Step, from int, match func(*schemas.Step) bool) int {
	for k := from; k < len(steps) && k < from+lookAhead; k++ {
		if match(steps[k]) {
			return k
		}
	}
	return -1
}

// changedFields names the fields that differ between two aligned steps.
func changedFields(a, b *schemas.Step) []string {
	var out []string
	for _, f := range []string{"step_id", "type", "description", "input", "output", "metadata", "timestamp", "parent_step_id"} {
		va, _ := a.Field(f)
		vb, _ := b.Field(f)
		if !equal(va, vb) {
			out = append(out, f)
		}
	}
	return out
}

// equal compares JSON values, treating numbers by value.
func equal(a, b any) bool {
	ja, _ := pyjson.Marshal(a)
	jb, _ := pyjson.Marshal(b)
	if bytes.Equal(ja, jb) {
		return true
	}
	var x, y any
	_ = pyjson.Unmarshal(ja, &x)
	_ = pyjson.Unmarshal(jb, &y)
	return sameValue(x, y)
}

// sameValue is reflect.DeepEqual with numbers compared by value (5 and 5.0 are the same).
func sameValue(a, b any) bool {
	if c, ok := pyjson.Compare(a, b); ok {
		return c == 0
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// Text renders the comparison for a terminal or a log.
func (d *Diff) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Comparing %s with %s (steps aligned by %s)\n", d.Files[0], d.Files[1], strings.ReplaceAll(d.AlignedBy, "_", " "))
	fmt.Fprintf(&b, "Steps: %d added, %d removed, %d changed, %d the same\n", d.Counts[Added], d.Counts[Removed], d.Counts[Changed], d.Counts[Same])
	for _, c := range d.Steps {
		switch c.Status {
		case Added:
			fmt.Fprintf(&b, "  + step %d %s %s %q\n", c.B, c.StepID, c.Type, c.Desc)
		case Removed:
			fmt.Fprintf(&b, "  - step %d %s %s %q\n", c.A, c.StepID, c.Type, c.Desc)
		case Changed:
			fmt.Fprintf(&b, "  ~ step %d→%d %s %s: %s\n", c.A, c.B, c.StepID, c.Type, strings.Join(c.Fields, ", "))
		}
	}
	if !d.Results {
		b.WriteString("Violations and risk: not compared (give --policy to evaluate traces)\n")
		return b.String()
	}
	fmt.Fprintf(&b, "Violations: %d appeared, %d disappeared\n", len(d.Appeared), len(d.Disappeared))
	for _, v := range d.Appeared {
		fmt.Fprintf(&b, "  + [%s] %s at step %d (%s)\n", strings.ToUpper(v.Severity), v.RuleID, v.Step, v.StepID)
	}
	for _, v := range d.Disappeared {
		fmt.Fprintf(&b, "  - [%s] %s at step %d (%s)\n", strings.ToUpper(v.Severity), v.RuleID, v.Step, v.StepID)
	}
	verdict := "unchanged"
	switch {
	case d.RiskDelta > 0:
		verdict = "ROSE"
	case d.RiskDelta < 0:
		verdict = "fell"
	}
	fmt.Fprintf(&b, "Risk: %d → %d (%+d): %s\n", d.RiskA, d.RiskB, d.RiskDelta, verdict)
	return b.String()
}
