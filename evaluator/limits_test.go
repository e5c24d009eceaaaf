package evaluator_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/schemas"
)

// testLimits keep the tests that break the time limit short; memoryLimits leave time
// enough for the memory limit to be the one broken on a slow machine.
var (
	testLimits   = evaluator.Limits{Time: 100 * time.Millisecond}
	memoryLimits = evaluator.Limits{Time: time.Minute}
)

// compileWith compiles conditions as rules r1, r2, … with options.
func compileWith(t *testing.T, o evaluator.Options, conds ...string) *evaluator.Compiled {
	t.Helper()
	c, err := evaluator.CompileWith(evaltest.PolicyOf(conds...), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Conditions that would take the process down (gigabytes, or hours) fail at their first
// step with a rule error naming the limit, the rule is quarantined, every later step
// records why, and the evaluation allocates a bounded amount on the way.
func TestRunawayConditionsFailWithinLimits(t *testing.T) {
	tests := []struct{ cond, want string }{
		// sizes known only at run time (step_index, step fields), so they load
		{"len(repeat(repeat(step.description, 999999), 999999)) > 0", "repeat of 3999996x999999 bytes exceeds the 16 MiB limit"},
		{"let a = 1..(step_index+100000); any(a, any(a, # < 0))", "ran longer than the 100ms limit"},
		{"let a = 1..(step_index+3000); all(a, all(a, all(a, true)))", "limit"},
		{"len(map(1..(step_index+900000), #)) > 0", "limit"},
		{"len(join(map(1..(step_index+100000), 'xxxxxxxxxx'), repeat('y', 1000))) > 0", "join of 100000 texts exceeds the 16 MiB limit"},
		{"len(reduce(1..(step_index+40), #acc + #acc, 'ab')) > 0", "concatenation of 16777216 bytes exceeds the 16 MiB limit"},
		{"len(reduce(1..(step_index+40), py_add(#acc, #acc), 'ab')) > 0", "concatenation of 16777216 bytes exceeds the 16 MiB limit"},
		{"len(reduce(1..(step_index+25), concat(#acc, #acc), [1])) > 0", "concat of 1048576 elements exceeds the 16 MiB limit"},
		{"len(split(repeat('a,,,,,,,', step_index + 900000), ',')) > 0", "split into 6300001 parts exceeds the 16 MiB limit"},
		{"len(sort(map(1..(step_index+500000), -#))) > 0", "what the condition's loops build exceeds the 16 MiB limit"},
		{"len(toJSON(map(1..(step_index+20000), steps))) > 0", "toJSON of a value of"},
		{"len(string(map(1..(step_index+20000), steps))) > 0", "string of a value of"},
		{"len(map(1..(step_index+100000), toJSON(step))) > 0", "exceeds the 16 MiB limit"},
		{"len(py_str(map(1..(step_index+20000), steps))) > 0", "str of a value of"},
		{"len(uniq(map(1..(step_index+200000), #))) > 0", "ran longer than the 100ms limit"},
		{"len(fromJSON('[' + repeat('0,', step_index + 900000) + '0]')) > 0", "fromJSON of 1.7 MiB exceeds the 16 MiB limit"},
		{"len(replace(repeat('a', step_index + 10000), 'a', repeat('b', 10000))) > 0", "replace making 100010000 bytes exceeds the 16 MiB limit"},
		{"len(upper(repeat('ab', step_index + 900000))) + len(lower(repeat('ab', step_index + 900000))) + len(toBase64(repeat('ab', step_index + 900000))) + len(toBase64(repeat('ab', step_index + 900000))) + len(toBase64(repeat('ab', step_index + 900000))) > 0", "exceeds the 16 MiB limit"},
		{"matches(step.description, repeat('a', step_index + 100000))", "a pattern of 98 KiB computed at run time exceeds the 64 KiB limit"},
		{"step.description matches repeat('a', step_index + 100000)", "a pattern of 98 KiB computed at run time exceeds the 64 KiB limit"},
		{"any(1..(step_index+900000), matches(map(1..(step_index + 10), steps), 'zzz'))", "limit"},
		{"len(1..2000000) > 0", "memory budget exceeded"}, // expr's own budget
	}
	for _, tc := range tests {
		t.Run(tc.cond, func(t *testing.T) {
			var quarantined []evaluator.Quarantine
			lim := memoryLimits
			if strings.Contains(tc.want, "ran longer") || tc.want == "limit" {
				lim = testLimits
			}
			c := compileWith(t, evaluator.Options{
				Limits:       lim,
				OnQuarantine: func(q evaluator.Quarantine) { quarantined = append(quarantined, q) },
			}, tc.cond, "step.type == 'tool_call'")
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			res := c.Evaluate(fixture())
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<20 {
				t.Errorf("the evaluation allocated %d MiB", alloc>>20)
			}
			if got := evaltest.IDs(res.Violations); !slices.Equal(got, []string{"s2/r2", "s3/r2"}) {
				t.Errorf("violations %v: the other rule must go on", got)
			}
			if len(res.RuleErrors) != 1 {
				t.Fatalf("rule errors %+v", res.RuleErrors)
			}
			e := res.RuleErrors[0]
			if e.RuleID != "r1" || e.Count != 5 || e.FirstStep != "s1" || !strings.Contains(e.FirstError, tc.want) {
				t.Fatalf("rule error %+v, want r1 failing at all 5 steps, first at s1 with %q", e, tc.want)
			}
			if len(quarantined) != 1 || quarantined[0].RuleID != "r1" || quarantined[0].StepID != "s1" || quarantined[0].TraceID != "t.1 *>" || quarantined[0].Limit == "" {
				t.Fatalf("quarantined %+v", quarantined)
			}
			// The next trace does not run the rule at all.
			res = c.Evaluate(fixture())
			if e := res.RuleErrors[0]; e.Count != 5 || !strings.HasPrefix(e.FirstError, `rule quarantined after step s1 of trace "t.1 *>": `) {
				t.Fatalf("quarantined rule at a later trace: %+v", e)
			}
		})
	}
}

// A condition that certainly breaks a limit is refused when the policy loads, naming the
// rule, the place and why.
func TestCompileTimeLimits(t *testing.T) {
	nine := "true"
	for range 9 {
		nine = "all([1,2,3,4,5,6,7,8,9,10], " + nine + ")"
	}
	tests := []struct{ cond, want string }{
		{`len(repeat(repeat("a", 999999), 999999)) > 0`, `test.json: rule "r1": condition: line 1, column 5: repeat of up to 999999x999999 bytes exceeds the 16 MiB limit`},
		{nine, `rule "r1": condition: line 1, column 169: nested quantifiers run up to 10x10x10x10x10x10x10 = 10000000 iterations, over the limit of 1000000`},
		{"all(steps, all(steps, all(steps, all(steps, all(steps, true)))))", `rule "r1": condition: line 1, column 45: quantifiers nested 5 deep; at most 4 may nest`},
		{"let a = 1..2000; any(a, any(a, # == 0))", "nested quantifiers run up to 2000x2000 = 4000000 iterations"},
		{"repeat('ab', 5000000) + repeat('ab', 5000000) != ''", "line 1, column 23: concatenation of up to 20000000 bytes exceeds the 16 MiB limit"}, // each 10 MB: fine alone
		{"len(repeat('ab' + 'cd', 3 * 1500000)) > 0", "repeat of up to 4x4500000 bytes"},
		{"__troy_budget != nil", "unknown name __troy_budget"},
		{"$env.__troy_count(1) > 0", "unknown name"},
		{"$env['__troy_budget'] != nil", "unknown name"},
	}
	for _, tc := range tests {
		t.Run(tc.cond, func(t *testing.T) {
			_, err := evaluator.Compile(evaltest.PolicyOf(tc.cond))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line with %q", err, tc.want)
			}
		})
	}
	for _, ok := range []string{
		"repeat('-', 80) != ''",
		"let a = [1,2,3,4,5,6,7,8,9,10]; all(a, all(a, all(a, all(a, true))))",
		"any(steps, any(steps, .step_id == step.step_id))",
		"count(1..1000, # % 7 == 0) > 100",
		"step_index in 1..100000000", // the optimizer turns it into comparisons
		"sum(1..100000000) > 0",      // and this into a formula
		"any(1..2000000, # == 0)",    // fails when it runs: the list is over the limit
	} {
		if _, err := evaluator.Compile(evaltest.PolicyOf(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// A stored policy keeps loading: the rule that breaks a limit is quarantined from the
// start, reported once, and recorded as a rule error at every step; the others run.
func TestQuarantineAtLoad(t *testing.T) {
	var got []evaluator.Quarantine
	c := compileWith(t, evaluator.Options{
		QuarantineAtLoad: true,
		OnQuarantine:     func(q evaluator.Quarantine) { got = append(got, q) },
	}, `len(repeat(repeat("a", 999999), 999999)) > 0`, "step.type == 'tool_call'")
	if len(got) != 1 || got[0].RuleID != "r1" || got[0].Limit != evaluator.LimitMemory || got[0].StepID != "" || got[0].PolicyHash != c.Hash() {
		t.Fatalf("quarantined %+v", got)
	}
	if q := c.Quarantined(); len(q) != 1 || q[0] != got[0] {
		t.Fatalf("Quarantined() = %+v", q)
	}
	res := c.Evaluate(fixture())
	if evaltest.IDs(res.Violations)[0] != "s2/r2" || len(res.RuleErrors) != 1 {
		t.Fatalf("%+v", res)
	}
	want := "rule quarantined when the policy loaded: line 1, column 5: repeat of up to 999999x999999 bytes exceeds the 16 MiB limit"
	if e := res.RuleErrors[0]; e.Count != 5 || e.FirstError != want {
		t.Fatalf("rule error %+v, want %q", e, want)
	}
}

// Many sessions breaking the same limit at once quarantine the rule once.
func TestQuarantineIsReportedOnce(t *testing.T) {
	var mu sync.Mutex
	n := 0
	c := compileWith(t, evaluator.Options{
		OnQuarantine: func(evaluator.Quarantine) { mu.Lock(); n++; mu.Unlock() },
	}, "len(repeat(repeat(step.description, 99999), 99999)) > 0")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if errs := c.Evaluate(fixture()).RuleErrors; len(errs) != 1 || errs[0].Count != 5 {
				t.Errorf("%+v", errs)
			}
		})
	}
	wg.Wait()
	if n != 1 {
		t.Fatalf("reported %d times", n)
	}
}

// The guard sees a rule that breaks a limit as a rule error, and goes on checking.
func TestGuardRuleBreakingALimit(t *testing.T) {
	c := compileWith(t, evaluator.Options{Limits: testLimits}, "let a = 1..(step_index+100000); any(a, any(a, # < 0))", "step.description == 'bash'")
	g, err := c.NewGuard(evaluator.GuardOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"read", "bash", "read"} {
		if _, err := g.Check(evaluator.CheckRequest{GuardStep: schemas.GuardStep{Action: action}}); err != nil {
			t.Fatal(err)
		}
	}
	if errs := g.RuleErrors(); len(errs) != 1 || errs[0].Count != 3 || !strings.Contains(errs[0].FirstError, "ran longer than the 100ms limit") {
		t.Fatalf("%+v", errs)
	}
	if vs := g.Violations(); len(vs) != 1 || vs[0].RuleID != "r2" {
		t.Fatalf("%+v", vs)
	}
}

// A memoized predicate is charged to the step it runs on: a predicate that breaks a limit
// fails the rule asking for it, with that limit.
func TestMemoizedPredicateBreakingALimit(t *testing.T) {
	c := compileWith(t, evaluator.Options{Limits: testLimits}, "step.type == 'observation' and any(prev_steps, len(repeat(#.description, 9999999)) > 0)")
	errs := c.Evaluate(fixture()).RuleErrors
	if len(errs) != 1 || errs[0].FirstStep != "s4" || !strings.Contains(errs[0].FirstError, "repeat of 4x9999999 bytes exceeds the 16 MiB limit") {
		t.Fatalf("%+v", errs)
	}
}

// Policies validate warns about costs that only the run-time limits bound.
func TestWarnings(t *testing.T) {
	c := compileWith(t, evaluator.Options{},
		"any(steps, any(prev_steps, .step_id == step.step_id))",
		"repeat(step.description, step_index) != ''",
		"len(toJSON(prev_steps)) > 100",
		"any(prev_steps, any(#.metadata.tags, # == 'a'))", // the outer loop is memoized
		"step.type == 'tool_call'",
	)
	var got []string
	for _, w := range c.Warnings() {
		got = append(got, w.String())
	}
	want := []string{
		`rule "r1": line 1, column 12: quantifiers nested 2 deep over lists known only at run time (steps, prev_steps): the work at each step is the product of their lengths`,
		`rule "r2": line 1, column 1: repeat with a count known only at run time: the text it makes is bounded only by the 16 MiB limit`,
		`rule "r3": line 1, column 5: toJSON(prev_steps) writes out the trace at every step: the cost grows with the square of its length`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Builtins, concatenation and matching rewritten to count what they allocate give the
// results expr's own give: the same violations and the same failures, on the fixture and
// on random traces.
func TestGuardedBuiltinsAgreeWithExpr(t *testing.T) {
	conds := []string{
		"repeat(step.description, 2) == 'planplan'",
		"repeat(step.description, -1) == ''",
		"join(['a', step.description], '-') == 'a-plan'",
		"join(map(prev_steps, .description)) contains 'plan'",
		"join(split(step.description, 'a'), '+') == 'pl+n'",
		"len(splitAfter(step.description, '_')) == 2",
		"split(step.description, '', 2)[0] == 'p'",
		"replace(step.description, 'a', 'AA') == 'plAAn'",
		"replace(step.description, '', '.') contains '.'",
		"upper(step.description) == 'PLAN' or lower(step.description) == 'read'",
		"string(step.input) contains 'IGNORE'",
		"string(step) contains 'plan'",
		"toJSON(step.input) contains 'prompt'",
		"toJSON(step.metadata) contains '\"'",
		"fromJSON(toJSON(step.input)).n == 5",
		"fromJSON(step.description) == nil", // fails on most steps: not JSON
		"fromBase64(toBase64(step.description)) == step.description",
		"fromBase64(step.description) == ''", // fails: not base64
		"len(keys(step.input)) == 2 and len(values(step.output)) > 0",
		"len(toPairs(step.metadata)) == 1",
		"fromPairs([['a', step.description]]).a == 'plan'",
		"len(concat(prev_steps, next_steps)) == 4",
		"flatten([[1, [2]], [step_index]])[2] == 3",
		"uniq([step_index, 1, step_index, 2]) == [1, 2] or len(uniq([step.description, step.description])) == 1",
		"reverse(map(steps, .step_id))[0] == 's5'",
		"sort(map(steps, .description))[0] == 'done'",
		"sort([3, 1, step_index], 'desc')[0] == 3",
		"step.description + '!' == 'plan!'",
		"step.input.prompt + step.description != ''", // fails where there is no prompt
		"(step.metadata.level ?? 0) + 1 == 4",
		"step.description + 1 == 'x'", // fails: text and number
		"step.description matches ('^' + 'p')",
		"step.description matches (step.type == 'llm_call' ? 'pl' : 'xx')",
		"step.input.prompt matches ('(' + step.description)", // a bad pattern
		"step.input.prompt matches step.input.n",             // a pattern that is not a text
		"matches(step.description, step.type == 'llm_call' ? 'PL' : 'zz')",
		"py_str(step.input) contains \"'n': 5\"",
		"py_add(step.description, '!') == 'plan!'",
		"py_add(map(prev_steps, .step_id), ['x'])[0] == 's1'",
		"len(py_slice(step.description, 1, nil)) == 3",
		"len(map(steps, # == step)) == 5",
		"len(filter(1..20, # % 3 == 0)) == 6 and len(groupBy(steps, .type)) == 4",
		"sortBy(steps, .description)[0].step_id == 's5'",
		"reduce(steps, #acc + len(#.description), 0) > 20",
		"sum(map(steps, len(.description))) > 20",
		"find(steps, .type == 'observation').step_id == 's4'",
		"findLastIndex(steps, .type == 'tool_call') == 2",
		"any(steps, .type == step.type and .step_id != step.step_id)",
		"all(prev_steps, all(#.metadata?.tags ?? [], # != 'z'))",
	}
	fast := compileWith(t, evaluator.Options{}, conds...)
	expr, err := evaluator.CompileUnlimited(evaltest.PolicyOf(conds...))
	if err != nil {
		t.Fatal(err)
	}
	traces := []*schemas.Trace{fixture()}
	r := rand.New(rand.NewPCG(7, 8))
	for range 20 {
		traces = append(traces, evaltest.RandomTrace(r, 1+r.IntN(12)))
	}
	for i, tr := range traces {
		got, want := fast.Evaluate(tr), expr.Evaluate(tr)
		if !slices.Equal(evaltest.IDs(got.Violations), evaltest.IDs(want.Violations)) {
			t.Fatalf("trace %d: violations %v, expr's builtins give %v", i, evaltest.IDs(got.Violations), evaltest.IDs(want.Violations))
		}
		if !slices.Equal(got.RuleErrors, want.RuleErrors) {
			t.Fatalf("trace %d: failures\n%+v\nexpr's builtins give\n%+v", i, got.RuleErrors, want.RuleErrors)
		}
	}
	// The fixture exercises every condition: each holds or fails somewhere.
	res := fast.Evaluate(fixture())
	seen := map[string]bool{}
	for _, v := range res.Violations {
		seen[v.RuleID] = true
	}
	for _, e := range res.RuleErrors {
		seen[e.RuleID] = true
	}
	for i, cond := range conds {
		if !seen[fmt.Sprintf("r%d", i+1)] {
			t.Errorf("r%d never holds nor fails on the fixture: %s", i+1, cond)
		}
	}
}

// Rewritten calls are typed as the originals were, so a mistake inside one would not be
// seen by expr's checker: such conditions are checked again as written.
func TestMistakesInsideRewrittenCallsAreFound(t *testing.T) {
	for _, cond := range []string{
		"lower(step.tpye) == 'x'",
		"len(split(step.description, step.tpye)) > 1",
		"'a' + (step.tpye ?? 'b') == 'ab'",
		"step.description + lower(step.tpye) == 'x'",
		"py_str(step.tpye) == 'x'",
		"join(map(split(step.description, ''), #tpye), '') != ''", // expr's compiler panics on it
	} {
		_, err := evaluator.Compile(evaltest.PolicyOf(cond))
		if err == nil || !strings.Contains(err.Error(), "tpye") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", cond, err)
		}
	}
}

// A chain of nested quantifiers is one warning, at its deepest.
func TestNestedQuantifiersWarnOnce(t *testing.T) {
	c := compileWith(t, evaluator.Options{}, "let a = 1..(step_index+1000); all(a, all(a, all(a, all(a, true))))")
	want := `rule "r1": line 1, column 52: quantifiers nested 4 deep over lists known only at run time (a, a, a, a): the work at each step is the product of their lengths`
	if w := c.Warnings(); len(w) != 1 || w[0].String() != want {
		t.Fatalf("%v", w)
	}
}
