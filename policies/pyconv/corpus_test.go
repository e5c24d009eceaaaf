package pyconv_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/policies/pyconv"
	"github.com/troy-audit/troy/schemas"
)

// corpusTrace is the trace every corpus condition is evaluated on, step by step.
const corpusTrace = `{
  "trace_id": "t1", "agent_name": "bot",
  "metadata": {"environment": "prod", "permission_level": "user"},
  "steps": [
    {"step_id": "s0", "type": "llm_call", "description": "Plan the work",
     "input": {"prompt": "Find the SQL report"}, "output": {"text": "ok"},
     "metadata": {"model": "gpt-4o", "tokens": 120}},
    {"step_id": "s1", "type": "tool_call", "description": "web_search",
     "input": {"query": "SELECT * FROM users", "limit": 5}, "output": {"results": [], "ok": true},
     "metadata": {"network_zone": "external", "tags": ["a", "b"], "score": 0.5}},
    {"step_id": "s2", "type": "tool_call", "description": "bash",
     "input": {"command": "rm -rf /tmp/x"}, "output": {},
     "metadata": {"permission_level": "admin", "empty": "", "none": null, "nested": {"k": "v", "n": 1}}},
    {"step_id": "s3", "type": "decision", "description": "Send the report",
     "input": {"options": ["send", "wait"]}, "output": {"choice": "send"},
     "metadata": {"approved": false, "count": 0, "note": "café \"quoted\" it's"}}
  ]
}`

// corpus pairs Python conditions with the verdict the Python tool gives at each of the four
// steps, worked out from Python's semantics and the tool's namespace (no builtins but str:
// len, int, any and all raise NameError): T the rule is violated, F it is not, E
// evaluating it raises (the Python tool then skips the rule at that step; so does troy).
var corpus = []struct{ cond, want string }{
	// Comparisons, chained comparisons.
	{`step['type'] == 'tool_call'`, "FTTF"},
	{`step['type'] != 'tool_call'`, "TFFT"},
	{`step['metadata'].get('tokens', 0) > 100`, "TFFF"},
	{`step['metadata'].get('score', 0) >= 0.5`, "FTFF"},
	{`step['metadata'].get('score', 1) < 1`, "FTFF"},
	{`step['metadata'].get('score', 1) <= 1`, "TTTT"},
	{`0 < step['metadata'].get('tokens', 0) < 200`, "TFFF"},
	{`1 < 2 < 3`, "TTTT"},
	{`3 > 2 > 2`, "FFFF"},
	{`step_index == 2`, "FFTF"},
	{`step_index >= 1 and step_index <= 2`, "FTTF"},
	{`step['metadata']['tokens'] > 100`, "TEEE"},
	{`step['metadata']['permission_level'] == 'admin'`, "EETE"},
	{`step['input']['query'] == 'x'`, "EFEE"},
	// in / not in over strings, tuples, lists, dicts.
	{`'SELECT' in step['input'].get('query', '')`, "FTFF"},
	{`'select' in step['input'].get('query', '')`, "FFFF"},
	{`step['type'] in ('tool_call', 'decision')`, "FTTT"},
	{`step['type'] not in ['tool_call']`, "TFFT"},
	{`'network_zone' in step['metadata']`, "FTFF"},
	{`'none' in step['metadata']`, "FFTF"},
	{`'a' in step['metadata'].get('tags', [])`, "FTFF"},
	{`'send' in step['input'].get('options', [])`, "FFFT"},
	{`'k' in step['metadata'].get('nested', {})`, "FFTF"},
	{`'v' in step['metadata'].get('nested', {})`, "FFFF"},
	{`step['metadata'].get('tokens') in [120, 5]`, "TFFF"},
	{`1 in step['metadata']`, "FFFF"},
	{`['a'] in step['metadata']`, "EEEE"},
	{`'x' in step['metadata'].get('tokens', 0)`, "EEEE"},
	{`'rm' in step['input'].get('command')`, "EETE"},
	{`step['description'] in 'web_search tools'`, "FTFF"},
	{`'' in step['description']`, "TTTT"},
	{`'type' in step`, "TTTT"},
	{`'timestamp' in step`, "FFFF"},
	{`'colour' in step`, "FFFF"},
	// is None / True / False.
	{`step['metadata'].get('none') is None`, "TTTT"},
	{`step['metadata'].get('approved') is False`, "FFFT"},
	{`step['metadata'].get('approved') is not True`, "TTTT"},
	{`step['output'].get('ok') is True`, "FTFF"},
	{`step['metadata'].get('count') is None`, "TTTF"},
	{`step['metadata'].get('count') is False`, "FFFF"},
	{`step['timestamp'] is None`, "EEEE"},
	{`step['parent_step_id'] is not None`, "EEEE"},
	{`step['metadata'].get('count', 1) == False`, "FFFT"},
	{`step['metadata'].get('count') == None`, "TTTF"},
	// Truthiness.
	{`step['output']`, "TTFT"},
	{`not step['output']`, "FFTF"},
	{`step['metadata'].get('empty')`, "FFFF"},
	{`step['metadata'].get('tags')`, "FTFF"},
	{`step['output'].get('results')`, "FFFF"},
	{`not step['output'].get('results', 'x')`, "FTFF"},
	{`step['metadata'].get('count', 7)`, "TTTF"},
	{`step['metadata'].get('score')`, "FTFF"},
	{`step_index`, "FTTT"},
	{`prev_steps`, "FTTT"},
	{`next_steps`, "TTTF"},
	{`steps`, "TTTT"},
	{`trace['metadata']`, "TTTT"},
	{`''`, "FFFF"},
	{`'x'`, "TTTT"},
	{`[]`, "FFFF"},
	{`{}`, "FFFF"},
	{`0.0`, "FFFF"},
	{`None`, "FFFF"},
	{`True`, "TTTT"},
	{`step`, "TTTT"},
	// and / or give one of their operands; short-circuits.
	{`step['metadata'].get('model') or step['metadata'].get('network_zone')`, "TTFF"},
	{`(step['metadata'].get('model') or 'none') == 'none'`, "FTTT"},
	{`(step['metadata'].get('model') and 'yes') == 'yes'`, "TFFF"},
	{`(step['metadata'].get('count', 5) and 'yes') == 0`, "FFFT"},
	{`(step['output'].get('results') or 'empty') == 'empty'`, "TTTT"},
	{`(step['output'].get('results', 'x') or 'empty') == []`, "FFFF"},
	{`'admin' in (step['metadata'].get('permission_level') or '')`, "FFTF"},
	{`'tokens' in step['metadata'] and step['metadata']['tokens'] > 100`, "TFFF"},
	{`'tokens' not in step['metadata'] or step['metadata']['tokens'] > 200`, "FTTT"},
	{`step['type'] == 'llm_call' or step['metadata']['permission_level'] == 'admin'`, "TETE"},
	{`False and step['missing']`, "FFFF"},
	{`True or step['missing']`, "TTTT"},
	{`step['missing'] or True`, "EEEE"},
	{`(0 or '' or None) is None`, "TTTT"},
	{`(1 and 'a' and []) == []`, "TTTT"},
	// not.
	{`not step['type'] == 'tool_call'`, "TFFT"},
	{`not (step_index > 1)`, "TTFF"},
	{`not not step['output']`, "TTFT"},
	// Subscripts and slices.
	{`step['input']['options'][0] == 'send'`, "EEET"},
	{`step['input'].get('options', ['x'])[-1] == 'wait'`, "FFFT"},
	{`step['input'].get('options', [])[5] == 'x'`, "EEEE"},
	{`step['description'][0] == 'P'`, "TFFF"},
	{`step['description'][-1] == 't'`, "FFFT"},
	{`step['description'][:4] == 'Plan'`, "TFFF"},
	{`step['description'][3:] == '_search'`, "FTFF"},
	{`len(prev_steps[-2:]) == 2`, "EEEE"},
	{`any(s['type'] == 'tool_call' for s in prev_steps[-1:])`, "EEEE"},
	{`steps[0]['type'] == 'llm_call'`, "TTTT"},
	{`steps[step_index]['step_id'] == step['step_id']`, "TTTT"},
	{`steps[-1]['type'] == 'decision'`, "TTTT"},
	{`step['metadata']['nested']['k'] == 'v'`, "EETE"},
	{`step['metadata'].get('nested', {}).get('n') == 1`, "FFTF"},
	{`step['metadata'].get('tags', [None])[0] is None`, "TFTT"},
	{`prev_steps[0]['type'] == 'llm_call'`, "ETTT"},
	{`next_steps[0]['type'] == 'decision'`, "FFTE"},
	{`step['description'][1:3] == 'la'`, "TFFF"},
	{`step['description'][100:] == ''`, "TTTT"},
	// str(), len(), int().
	{`str(step['metadata'].get('tokens')) == '120'`, "TFFF"},
	{`str(step['metadata'].get('tokens')) == 'None'`, "FTTT"},
	{`str(step['output'].get('ok')) == 'True'`, "FTFF"},
	{`str(step['metadata'].get('score')) == '0.5'`, "FTFF"},
	{`str(step['input']) == "{'prompt': 'Find the SQL report'}"`, "TFFF"},
	{`str(step['metadata'].get('tags')) == "['a', 'b']"`, "FTFF"},
	{`str(step['output']) == '{}'`, "FFTF"},
	{`str(step['metadata'].get('tokens', 1.0)) == '1.0'`, "FTTT"},
	{`matches(str(step['input']), r"'query': 'SELECT")`, "FTFF"},
	{`matches(str(step['output']), r"'ok': True")`, "FTFF"},
	{`matches(str(step['metadata']), r"'none': None")`, "FFTF"},
	{`matches(str(step['metadata']), r"'nested': \{'k': 'v', 'n': 1\}")`, "FFTF"},
	{`matches(str(step['metadata']), r'"quoted"')`, "FFFT"},
	{`matches(str(step['metadata']), r"it\\'s")`, "FFFT"},
	{`matches(str(step['metadata']), r"café")`, "FFFT"},
	{`matches(str(step['output']), r"'results': \[\]")`, "FTFF"},
	{`matches(str(step.get('input', {})), r'select|rm -rf')`, "FTTF"},
	{`len(step['input']) == 2`, "EEEE"},
	{`len(step['description']) > 10`, "EEEE"},
	{`len(steps) == 4`, "EEEE"},
	{`len(step['metadata'].get('tokens'))`, "EEEE"},
	{`len(step['metadata'].get('tags', '')) == 0`, "EEEE"},
	{`len(step) == 8`, "EEEE"},
	{`int(step['metadata'].get('tokens', '7')) == 7`, "EEEE"},
	{`int(step['metadata'].get('score', 0)) == 0`, "EEEE"},
	{`int(step['description']) > 0`, "EEEE"},
	{`int(step['metadata'].get('approved', True)) == 1`, "EEEE"},
	{`int(step['metadata'].get('none', 1)) == 1`, "EEEE"},
	// + on strings, numbers and lists.
	{`step['type'] + ':' + step['description'] == 'tool_call:bash'`, "FFTF"},
	{`step['description'] + 1 == 'x'`, "EEEE"},
	{`step_index + 1 == len(steps)`, "EEEE"},
	{`step['input'].get('options', []) + ['x'] == ['send', 'wait', 'x']`, "FFFT"},
	{`step['metadata'].get('tokens', 0) + 0.5 > 100`, "TFFF"},
	{`len(steps) - step_index == 1`, "EEEE"},
	// The Python tool's step quantifiers.
	{`any_next(lambda s: s['type'] == 'decision')`, "TTTF"},
	{`any_prev(lambda s: s['metadata'].get('network_zone') == 'external')`, "FFTT"},
	{`any_step(lambda s: s['type'] == 'observation')`, "FFFF"},
	{`any_step(lambda x: x['step_id'] == 's2')`, "TTTT"},
	{`any_prev(lambda s: s['metadata']['tokens'] > 100)`, "FTTT"},
	{`any_next(lambda s: s['metadata']['tokens'] > 100)`, "EEEF"},
	{`any_next(lambda step: step['type'] == 'decision') and step['type'] == 'tool_call'`, "FTTF"},
	{`get(step, 'metadata.data_classification') == 'pii' and any_next(lambda s: s['type'] == 'tool_call' and get(s, 'metadata.network_zone') == 'external')`, "FFFF"},
	// The helpers range over the current step's neighbours, wherever they are called.
	{`any_next(lambda s: any_prev(lambda t: t['step_id'] == 's0'))`, "FTTF"},
	// all() and any() over generators and lists.
	{`any(s['type'] == 'tool_call' for s in prev_steps)`, "EEEE"},
	{`all(s['type'] != 'decision' for s in prev_steps)`, "EEEE"},
	{`all(s['type'] == 'llm_call' for s in prev_steps)`, "EEEE"},
	{`any(s['metadata'].get('permission_level') == 'admin' for s in steps if s['type'] == 'tool_call')`, "EEEE"},
	{`all(s['metadata'].get('permission_level') != 'admin' for s in next_steps if s['type'] == 'tool_call')`, "EEEE"},
	{`any(t == 'b' for t in step['metadata'].get('tags', []))`, "EEEE"},
	{`any(o == 'wait' for o in step['input'].get('options', []) if o != 'send')`, "EEEE"},
	{`any([step_index == 2, step_index == 3])`, "EEEE"},
	{`all([step['output'], step['metadata']])`, "EEEE"},
	{`any(s['missing'] for s in prev_steps)`, "EEEE"},
	{`all(s['step_id'] != step['step_id'] for s in prev_steps)`, "EEEE"},
	// Conditional expressions.
	{`(step['metadata'].get('tokens', 0) if step['type'] == 'llm_call' else 500) > 100`, "TTTT"},
	{`'ok' if step['output'] else ''`, "TTFT"},
	// trace, agent and the helpers get and matches.
	{`trace['metadata']['environment'] == 'prod'`, "TTTT"},
	{`trace['metadata'].get('region') is None`, "TTTT"},
	{`get(agent, 'metadata.permission_level') != 'admin' and get(step, 'metadata.permission_level') == 'admin'`, "FFTF"},
	{`trace['trace_id'] == 't1'`, "TTTT"},
	{`agent['name'] == 'bot'`, "TTTT"},
	{`get(step, 'metadata.nested.k') == 'v'`, "FFTF"},
	{`get(step, 'metadata.missing.deep', 'd') == 'd'`, "TTTT"},
	{`get(trace, 'metadata.environment') == 'prod'`, "TTTT"},
	{`get(step, 'metadata.requires_approval') is True and get(step, 'metadata.approval_token') is None`, "FFFF"},
	{`step['type'] == 'tool_call' and matches(get(step, 'input.query', ''), r'SELECT|INSERT|UPDATE|DELETE|DROP|UNION')`, "FTFF"},
	{`matches(step['input'].get('query', ''), r'select\s+\*')`, "FTFF"},
	{`matches(step['description'], r'^web_')`, "FTFF"},
	// String literals and escapes.
	{`step['metadata'].get('note', '') == 'caf\u00e9 "quoted" it\'s'`, "FFFT"},
	{`'\t' in step['description']`, "FFFF"},
	{`step['description'] == "Plan the work"`, "TFFF"},
	{`'\\' not in step['description']`, "TTTT"},
	// Numbers, mixed types.
	{`step['metadata'].get('score', 0) == 0.5`, "FTFF"},
	{`step['metadata'].get('tokens', 0) == 120.0`, "TFFF"},
	{`step['metadata'].get('count', -1) == -1`, "TTTF"},
	{`step['metadata'].get('tokens', 0) > 'a'`, "EEEE"},
	{`None < 1`, "EEEE"},
	{`step['metadata'].get('tags', []) < ['b']`, "TTTT"},
	{`step['output'].get('ok') == 1`, "FTFF"},
	{`step['output'] == {}`, "FFTF"},
	{`step['input'] == {'options': ['send', 'wait']}`, "FFFT"},
	{`step['type'] == 1`, "FFFF"},
	{`step['metadata'].get('tokens', 0) < 1e999`, "TTTT"},
	{`-1E700 < step_index`, "TTTT"},
	{`get(step, step['metadata'].get('path', 'type')) == 'tool_call'`, "FTTF"},
	{`get(step, [])`, "EEEE"},
	// The quantifiers stop at the first step that holds, as Python's any() does.
	{`any_step(lambda s: s['step_id'] == 's0' or s['metadata']['tokens'] > 0)`, "TTTT"},
	{`any_prev(lambda s: s['step_id'] == 's0' or s['metadata']['tokens'] > 0)`, "FTTT"},
	{`any_next(lambda s: s['step_id'] == 's3' or s['metadata']['tokens'] > 0)`, "EETF"},
	{`any_next(lambda s: s['step_id'] == 's2' or s['metadata']['tokens'] > 0)`, "ETEF"},
	// matches() takes str() of what it is given.
	{`matches(step['input'], r"'query': 'SELECT")`, "FTFF"},
	{`matches(step['metadata'].get('tags'), r"^\['a', 'b'\]$")`, "FTFF"},
	{`matches(step['output'].get('ok'), '^True$')`, "FTFF"},
	{`matches(None, '^None$')`, "TTTT"},
	{`matches(step['metadata'].get('score', 0.0), r'^0\.[05]$')`, "TTTT"},
	{`matches(step_index, '^2$')`, "FFTF"},
	{`-step`, "EEEE"},
	{`+step_index == step_index`, "TTTT"},
	{`-step_index < 0`, "FTTT"},
	{`step_index - True == -1`, "TFFF"},
	{`step['description'] - 1`, "EEEE"},
	{`-step['metadata'].get('score', 0) == -0.5`, "FTFF"},
	// Assignment expressions: the name is bound where := is evaluated and read in the rest
	// of the expression; reading it before, or outside the lambda that binds it, raises.
	{`(x := step['type']) == 'tool_call' and x != 'llm_call'`, "FTTF"},
	{`(d := step['metadata'].get('tokens')) is not None and d > 100`, "TFFF"},
	{`matches(out := str(step.get('output', {})), r"'ok': True") and out`, "FTFF"},
	{`(out := str(step.get('output', {}))) and matches(out, r'results')`, "FTFF"},
	{`step_index > 1 and (n := step_index) == 2 or n == 0`, "EETF"},
	{`any_next(lambda s: (t := s['type']) == 'decision' and t != step['type'])`, "TTTF"},
	{`any_prev(lambda s: (t := 1)) and t == 1`, "FEEE"},
	{`(k := step['type']) and any_prev(lambda s: s['type'] == k)`, "FFTF"},
	{`(a := (b := step_index) + 1) == b + 1`, "TTTT"},
	{`[y := step_index, y + 1][1] == step_index + 1`, "TTTT"},
	{`step['description'][i := 0] == 'P' and i == 0`, "TFFF"},
	{`get(step, (p := 'metadata.permission_level')) == 'admin' and p`, "FFTF"},
	{`y == 1 or (y := 1)`, "EEEE"},
	{`(z := 1) and (z := z + step_index) == 3`, "FFTF"},
	{`(w := step_index) if step_index else w`, "ETTT"},
	{`(w := step_index) if step_index else 0`, "FTTT"},
	{`any_next(lambda s: (u := s['step_id'])) and (u := 'x') == 'x'`, "TTTF"},
	{`(lst := step['input'].get('options', [])) and lst[0] == 'send'`, "FFFT"},
	{`step_index == 0 or (q := step_index) and any_prev(lambda s: q == 2)`, "TFTF"},
	// Names the Python tool's namespace lacks raise NameError where they are reached; the
	// arguments of such a call are never evaluated.
	{`x == 1`, "EEEE"},
	{`foo(step['missing'])`, "EEEE"},
	{`__import__('os')`, "EEEE"},
	{`eval('1')`, "EEEE"},
	{`step_index >= 2 and all(s['description'] == step['description'] for s in prev_steps[-2:])`, "FFEE"},
	{`step_index < 2 or len(steps) > 100`, "TTEE"},
	{`sum([1, 2]) if step_index == 3 else step_index`, "FTTE"},
	{`true`, "EEEE"},
	{`null`, "EEEE"},
}

func TestCorpusVerdictsMatchPython(t *testing.T) {
	tr, err := ingest.DecodeTrace([]byte(corpusTrace))
	if err != nil {
		t.Fatal(err)
	}
	if len(corpus) < 150 {
		t.Fatalf("the corpus has %d conditions; keep at least 150", len(corpus))
	}
	for i, tc := range corpus {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			conv, err := pyconv.Convert(tc.cond)
			if err != nil {
				t.Fatalf("%s: %v", tc.cond, err)
			}
			p := &policies.Policy{PolicyID: "corpus", Rules: []policies.Rule{{RuleID: "r", Description: "d", Condition: conv, Severity: "low"}}}
			c, err := evaluator.Compile(p)
			if err != nil {
				t.Fatalf("%s\nconverted: %s\n%v", tc.cond, conv, err)
			}
			res := c.Evaluate(tr)
			got := []byte("FFFF")
			for _, v := range res.Violations {
				for k, s := range tr.Steps {
					if s.StepID == v.StepID {
						got[k] = 'T'
					}
				}
			}
			errs, first := 0, ""
			for _, re := range res.RuleErrors {
				errs, first = re.Count, re.FirstStep
			}
			wantErrs, wantFirst := strings.Count(tc.want, "E"), ""
			if i := strings.IndexByte(tc.want, 'E'); i >= 0 {
				wantFirst = tr.Steps[i].StepID
			}
			wantVerdicts := strings.ReplaceAll(tc.want, "E", "F")
			if string(got) != wantVerdicts || errs != wantErrs || first != wantFirst {
				t.Fatalf("%s\nconverted: %s\nverdicts %s with %d errors from %q, want %s (%s)\nerrors: %+v",
					tc.cond, conv, got, errs, first, wantVerdicts, tc.want, res.RuleErrors)
			}
		})
	}
}

var _ = schemas.StepToolCall
