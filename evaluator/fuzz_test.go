package evaluator_test

import (
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/policies"
)

// fuzzLimits are small, so that an input breaking them costs the fuzzer little.
var fuzzLimits = evaluator.Limits{Time: 10 * time.Millisecond, Memory: 1 << 20}

// FuzzPolicy loads a policy document and a condition, compiles both and evaluates them on
// a trace under small limits: nothing panics, an error is one line per rule, and the
// evaluation stays within what the limits allow (time and allocation, generously).
//
//	go test ./evaluator -run XXX -fuzz FuzzPolicy -fuzztime 2m
func FuzzPolicy(f *testing.F) {
	all, err := policies.Templates()
	if err != nil {
		f.Fatal(err)
	}
	for _, t := range all {
		f.Add(t.Raw, "step.type == 'tool_call'")
	}
	for _, name := range []string{"../examples/policy.json", "../examples/python_policy.json", "../examples/judge_policy.json"} {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, "any(prev_steps, .type == step.type)")
	}
	for _, cond := range []string{
		`len(repeat(repeat("a", 999999), 999999)) > 0`,
		`len(repeat(repeat(step.description, 999999), 999999)) > 0`,
		`let a = 1..(step_index+3000); all(a, all(a, all(a, true)))`,
		`len(reduce(1..(step_index+40), #acc + #acc, 'ab')) > 0`,
		`len(toJSON(map(1..(step_index+20000), steps))) > 0`,
		`len(uniq(map(1..(step_index+200000), #))) > 0`,
		`step.description matches repeat('(a|b)*', step_index + 20)`,
		`join(map(split(step.description, ''), upper(#)), '') == 'PLAN'`,
		`py_str(steps) contains "'plan'"`,
		`step['input']['prompt'].lower() in ('a', 'b')`,
		`'money' in category(step) and len(untrusted(step.input)) > 0`,
		`any(prev_steps, injection_score(#.output) >= 0.3) and from_user(step.description)`,
		`len(origin(repeat(step.description, 9999))) == 0 or injected(steps)`,
		`any(untrusted(step.input), context_score(#) >= 0.2) or context_score(repeat('a@b.io ', step_index + 9999)) > 0`,
	} {
		f.Add([]byte(`{"rules":[]}`), cond)
	}
	f.Add([]byte(`{"tool_categories": {"wire": ["money", "outbound"], "noop": []}, "rules":[]}`), `'money' in category(step)`)
	f.Add([]byte(`{"tool_categories": {"Wire": ["money"], "wire": ["read"]}, "rules":[]}`), `true`)
	f.Add([]byte(`{"rules":[{"rule_id":"j","description":"d","condition":"step.type == 'tool_call'","judge":{"on_error":"allow","timeout":"1s"}}]}`), `true`)
	f.Add([]byte(`{"rules":[{"rule_id":"j","description":"d","condition":"true","judge":{"timeout":"-1s","question":""}}]}`), `true`)
	f.Fuzz(func(t *testing.T, raw []byte, cond string) {
		if p, err := policies.Parse(raw, "fuzz.json", "fuzz"); err == nil {
			if p.IsPython() {
				p.ConvertPython()
			}
			if len(p.Rules) <= 50 {
				evaluateWithin(t, p)
			}
		}
		doc, _ := json.Marshal(map[string]any{"rules": []map[string]any{{"rule_id": "r", "description": "d", "condition": cond}}})
		p, err := policies.Parse(doc, "fuzz.json", "fuzz")
		if err != nil {
			return // a condition that is not valid UTF-8, or empty
		}
		if p.IsPython() {
			p.ConvertPython()
		}
		evaluateWithin(t, p)
	})
}

func evaluateWithin(t *testing.T, p *policies.Policy) {
	t.Helper()
	c, err := evaluator.CompileWith(p, evaluator.Options{Limits: fuzzLimits})
	if err != nil {
		if n := strings.Count(err.Error(), "\n") + 1; n > len(p.Rules) {
			t.Fatalf("%d lines of errors for %d rules:\n%v", n, len(p.Rules), err)
		}
		return
	}
	tr := fixture()
	evaluations := int64(len(p.Rules) * len(tr.Steps))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	res := c.Evaluate(tr)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	// Bounds far above what the limits allow, far below a runaway: a rule runs under the
	// time limit at most once past it (then it is quarantined), and each evaluation
	// allocates its memory limit within a small factor.
	if limit := 5*time.Second + time.Duration(len(p.Rules))*20*fuzzLimits.Time; took > limit {
		t.Fatalf("evaluation took %v, over %v", took, limit)
	}
	if alloc, limit := int64(after.TotalAlloc-before.TotalAlloc), 256<<20+evaluations*16*fuzzLimits.Memory; alloc > limit {
		t.Fatalf("evaluation allocated %d MiB, over %d MiB", alloc>>20, limit>>20)
	}
	for _, e := range res.RuleErrors {
		if strings.Contains(e.FirstError, "\n") {
			t.Fatalf("rule error on more than one line: %q", e.FirstError)
		}
	}
}
