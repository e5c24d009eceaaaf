package policies_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// An oracle of the seven templates, written from the fact sheet of the Python tool's
// rules and independent of the policy files, the condition language and the matching
// engine. Its patterns run on Go's regexp, which reads them as Python does on the texts
// it is given here (no İ or ı, no non-ASCII digits or letters next to a \b, no newline
// at the end of a description).

type oracleStep struct {
	typ, desc     string
	input, output map[string]any
	meta          map[string]any
}

type oracleRule struct {
	id   string
	test func(agent map[string]any, steps []oracleStep, i int) bool
}

func re(p string) *regexp.Regexp { return regexp.MustCompile("(?i)" + p) }

var (
	p1  = re(`ignore previous instructions|ignore all prior|disregard your instructions|you are now|new system prompt`)
	p2  = re(`(delete|drop|kill|rm|format|truncate)`)
	p3  = re(`^(bash|shell|exec|subprocess)$`)
	p4  = re(`(delete|drop|kill|terminate|format|truncate|purge|destroy)`)
	p5  = re(`\b(SELECT|INSERT|UPDATE|DELETE|DROP|ALTER|UNION)\b`)
	p6  = re(`ignore previous instructions|ignore all prior|disregard (your|all|the) (instructions|rules)|system prompt override|you are now|act as root|run as admin|new system prompt|forget everything`)
	p7  = re(`\b\d{3}-\d{2}-\d{4}\b|\b\d{16}\b|password\s*[:=]`)
	p8  = re(`^(bash|shell|exec|subprocess|os\.system|eval)$`)
	p9  = re(`^(write_file|delete_file|rm|rmdir|unlink)$`)
	p10 = re(`(fill_form|submit_form|type_text|send_keys)`)
	p11 = re(`password|secret|token|api.?key|credential`)
	p12 = re(`(navigate|goto|open_url|browse)`)
	p13 = re(`(download|save_file|fetch_file)`)
	p14 = re(`(execute_script|eval_js|run_javascript|inject_script)`)
	p15 = re(`(scrape|extract|get_text|get_page)`)
	p16 = re(`(write|update|delete|create|deploy|migrate|alter)`)
	p17 = re(`(delete|drop|terminate|shutdown|kill|truncate|purge)`)
)

// repr is Python's repr() of decoded JSON, for the texts the oracle's traces hold. Dict
// keys are written sorted, as troy does (see docs/POLICIES.md); no template pattern spans
// two entries.
func repr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int:
		return strconv.Itoa(x)
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if x == math.Trunc(x) && math.Abs(x) < 1e16 {
			s = strconv.FormatFloat(x, 'f', 1, 64)
		}
		return s
	case string:
		q := "'"
		if strings.Contains(x, "'") && !strings.Contains(x, `"`) {
			q = `"`
		}
		r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`, "\t", `\t`, q, `\`+q)
		return q + r.Replace(x) + q
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = repr(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = repr(k) + ": " + repr(x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	panic(fmt.Sprintf("repr of %T", v))
}

func oracleRules() []oracleRule {
	type S = oracleStep
	type A = map[string]any
	tool := func(s S) bool { return s.typ == "tool_call" }
	llm := func(s S) bool { return s.typ == "llm_call" }
	absent := func(m map[string]any, k string) bool { return m[k] == nil }
	is := func(m map[string]any, k, v string) bool { s, ok := m[k].(string); return ok && s == v }
	isTrue := func(m map[string]any, k string) bool { b, ok := m[k].(bool); return ok && b }
	isFalse := func(m map[string]any, k string) bool { b, ok := m[k].(bool); return ok && !b }
	in := func(s S) string { return repr(s.input) }
	out := func(s S) string { return repr(s.output) }
	prev := func(steps []S, i int, key, v string) bool {
		return slices.ContainsFunc(steps[:i], func(p S) bool { return is(p.meta, key, v) })
	}
	oneOf := func(m map[string]any, k string, vs ...string) bool {
		s, ok := m[k].(string)
		return ok && slices.Contains(vs, s)
	}
	priv := func(a A, st []S, i int) bool {
		return !is(a, "permission_level", "admin") && is(st[i].meta, "permission_level", "admin")
	}
	noAuth := func(a A, st []S, i int) bool {
		s := st[i]
		return tool(s) && is(s.meta, "network_zone", "external") && absent(s.meta, "auth_method")
	}
	rawSQL := func(a A, st []S, i int) bool {
		s := st[i]
		if !tool(s) {
			return false
		}
		q, sq := s.input["query"], s.input["sql"]
		if q == nil {
			q = ""
		}
		if sq == nil {
			sq = ""
		}
		qs, ok1 := q.(string)
		ss, ok2 := sq.(string)
		if ok1 && ok2 {
			return p5.MatchString(qs + ss)
		}
		ql, ok1 := q.([]any)
		sl, ok2 := sq.([]any)
		if ok1 && ok2 {
			return p5.MatchString(repr(append(slices.Clone(ql), sl...)))
		}
		return false // numbers add up to digits; any other mix raises in Python
	}
	phi := func(s S) bool { return is(s.meta, "data_classification", "phi") }
	ext := func(s S) bool { return is(s.meta, "network_zone", "external") }
	r := func(id string, f func(a A, st []S, i int) bool) oracleRule { return oracleRule{id, f} }
	one := func(id string, f func(S) bool) oracleRule {
		return oracleRule{id, func(_ A, st []S, i int) bool { return f(st[i]) }}
	}
	return []oracleRule{
		one("min-prompt-injection", func(s S) bool { return p1.MatchString(in(s)) }),
		one("min-destructive-action", func(s S) bool { return tool(s) && p2.MatchString(s.desc) && absent(s.meta, "approval_token") }),
		one("min-shell-execution", func(s S) bool { return tool(s) && p3.MatchString(s.desc) }),

		r("safety-privilege-escalation", priv),
		one("safety-destructive-action", func(s S) bool { return tool(s) && p4.MatchString(s.desc) && absent(s.meta, "approval_token") }),
		one("safety-financial-action", func(s S) bool {
			return tool(s) && is(s.meta, "category", "financial") && absent(s.meta, "approval_token")
		}),
		one("safety-communication-unproxied", func(s S) bool {
			return tool(s) && is(s.meta, "category", "communication") && !isTrue(s.meta, "proxy_approved")
		}),
		r("safety-runaway-loop", func(_ A, _ []S, i int) bool { return i >= 50 }),
		r("safety-repeated-tool", func(A, []S, int) bool { return false }),
		r("safety-raw-sql", rawSQL),
		r("safety-unauthenticated-external", noAuth),

		one("owasp-prompt-injection", func(s S) bool { return p6.MatchString(in(s)) }),
		one("owasp-sensitive-data-exposure", func(s S) bool { return oneOf(s.meta, "data_classification", "pii", "secret", "confidential") && ext(s) }),
		one("owasp-sensitive-data-in-output", func(s S) bool { return p7.MatchString(out(s)) }),
		one("owasp-insecure-plugin-design", func(s S) bool { return tool(s) && isFalse(s.meta, "input_validated") }),
		one("owasp-excessive-agency-shell", func(s S) bool { return tool(s) && p8.MatchString(s.desc) }),
		one("owasp-excessive-agency-filesystem", func(s S) bool { return tool(s) && p9.MatchString(s.desc) }),
		one("owasp-excessive-agency-network", func(s S) bool { return tool(s) && ext(s) && absent(s.meta, "approval_token") }),
		one("owasp-overreliance-no-source", func(s S) bool {
			return llm(s) && isTrue(s.meta, "requires_citation") && !isTrue(s.meta, "has_citation")
		}),

		one("dp-pii-to-external", func(s S) bool {
			return is(s.meta, "data_classification", "pii") && ext(s) && absent(s.meta, "consent_token")
		}),
		r("dp-pii-exfiltration-cross-step", func(_ A, st []S, i int) bool { return ext(st[i]) && prev(st, i, "data_classification", "pii") }),
		one("dp-unclassified-data", func(s S) bool { return tool(s) && absent(s.meta, "data_classification") }),
		one("dp-sensitive-logging", func(s S) bool {
			return oneOf(s.meta, "data_classification", "secret", "credential") && is(s.meta, "log_level", "verbose")
		}),
		one("dp-retention-exceeded", func(s S) bool {
			return tool(s) && !absent(s.meta, "retention_days") && isTrue(s.meta, "retention_exceeded")
		}),
		one("dp-cross-border-transfer", func(s S) bool {
			a, b := s.meta["source_region"], s.meta["dest_region"]
			return a != nil && b != nil && repr(a) != repr(b) && !isTrue(s.meta, "transfer_approved") // regions in these traces are strings
		}),

		one("browse-credential-leak", func(s S) bool { return tool(s) && p10.MatchString(s.desc) && p11.MatchString(in(s)) }),
		one("browse-domain-allowlist", func(s S) bool { return tool(s) && p12.MatchString(s.desc) && !isTrue(s.meta, "domain_approved") }),
		one("browse-download-restricted", func(s S) bool { return tool(s) && p13.MatchString(s.desc) && absent(s.meta, "approval_token") }),
		one("browse-javascript-execution", func(s S) bool { return tool(s) && p14.MatchString(s.desc) }),
		one("browse-data-extraction-unclassified", func(s S) bool { return tool(s) && p15.MatchString(s.desc) && absent(s.meta, "data_classification") }),
		one("browse-payment-form", func(s S) bool {
			return tool(s) && is(s.meta, "category", "payment") && absent(s.meta, "approval_token")
		}),

		r("soc2-access-control", priv),
		r("soc2-auth-required", noAuth),
		one("soc2-audit-trail", func(s S) bool { return tool(s) && absent(s.meta, "trace_id") && absent(s.meta, "session_id") }),
		one("soc2-change-approval", func(s S) bool {
			return tool(s) && is(s.meta, "environment", "production") && p16.MatchString(s.desc) && absent(s.meta, "change_ticket")
		}),
		one("soc2-confidential-data", func(s S) bool {
			return oneOf(s.meta, "data_classification", "confidential", "restricted") && ext(s) && !isTrue(s.meta, "encrypted")
		}),
		one("soc2-pii-consent", func(s S) bool {
			return is(s.meta, "data_classification", "pii") && absent(s.meta, "consent_token") && absent(s.meta, "legal_basis")
		}),
		one("soc2-incident-response", func(s S) bool {
			return is(s.meta, "environment", "production") && !absent(s.meta, "error") && absent(s.meta, "incident_id")
		}),
		one("soc2-vendor-risk", func(s S) bool { return tool(s) && ext(s) && !isTrue(s.meta, "vendor_approved") }),
		one("soc2-availability-destructive", func(s S) bool { return tool(s) && p17.MatchString(s.desc) && absent(s.meta, "approval_token") }),
		one("soc2-processing-integrity", func(s S) bool {
			return tool(s) && is(s.meta, "category", "data_transform") && !isTrue(s.meta, "output_validated")
		}),

		r("hipaa-phi-access-control", func(a A, st []S, i int) bool { return phi(st[i]) && !isTrue(a, "hipaa_authorized") }),
		one("hipaa-phi-transmission", func(s S) bool { return phi(s) && ext(s) && !isTrue(s.meta, "encrypted") }),
		one("hipaa-phi-audit-log", func(s S) bool { return phi(s) && absent(s.meta, "audit_ref") }),
		one("hipaa-minimum-necessary", func(s S) bool { return phi(s) && !isTrue(s.meta, "fields_scoped") }),
		r("hipaa-phi-exfiltration", func(_ A, st []S, i int) bool { return ext(st[i]) && prev(st, i, "data_classification", "phi") }),
		one("hipaa-phi-retention", func(s S) bool { return phi(s) && isTrue(s.meta, "retention_exceeded") }),
		one("hipaa-baa-required", func(s S) bool { return phi(s) && ext(s) && !isTrue(s.meta, "baa_on_file") }),
		one("hipaa-emergency-access", func(s S) bool { return phi(s) && is(s.meta, "access_type", "emergency") && !isTrue(s.meta, "reviewed") }),
	}
}

// oracle lists "step rule" for every violation, step by step and in rule order within a
// step, for the rules of the given ids.
func oracle(tr *schemas.Trace, ids []string) []string {
	var steps []oracleStep
	for _, s := range tr.Steps {
		steps = append(steps, oracleStep{s.Type, s.Description, s.Input, s.Output, s.Metadata})
	}
	rules := oracleRules()
	var out []string
	for i, s := range tr.Steps {
		for _, id := range ids {
			k := slices.IndexFunc(rules, func(r oracleRule) bool { return r.id == id })
			if rules[k].test(tr.Metadata, steps, i) {
				out = append(out, s.StepID+" "+id)
			}
		}
	}
	return out
}

func violationList(vs []schemas.Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.StepID + " " + v.RuleID
	}
	return out
}

// oracleTraces are the example traces and generated ones: short and long, with many
// steps that misbehave.
func oracleTraces(t *testing.T) map[string]*schemas.Trace {
	t.Helper()
	out := map[string]*schemas.Trace{}
	files, err := filepath.Glob("../examples/traces/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("example traces: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := ingest.DecodeTrace(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		tr.Normalize()
		out[filepath.Base(f)] = tr
	}
	for _, o := range []tracegen.Options{{Steps: 12, Seed: 1, BadRate: 0.3}, {Steps: 60, Seed: 2, BadRate: 0.2}, {Steps: 30, Seed: 3}} {
		g := tracegen.New(o)
		for range 4 {
			tr := g.Trace()
			tr.Normalize()
			out[tr.TraceID] = tr
		}
	}
	return out
}

func TestTemplatesAgreeWithTheOracle(t *testing.T) {
	traces := oracleTraces(t)
	var names []string
	for n := range traces {
		names = append(names, n)
	}
	slices.Sort(names)
	fired := map[string]bool{}
	for _, p := range pythonTemplates {
		tp, err := policies.LookupTemplate(p.stem)
		if err != nil {
			t.Fatal(err)
		}
		c, err := evaluator.Compile(tp.Policy)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			tr := traces[n]
			res := c.Evaluate(tr)
			if len(res.RuleErrors) > 0 {
				t.Errorf("%s on %s: rule errors %+v", p.stem, n, res.RuleErrors)
			}
			got, want := violationList(res.Violations), oracle(tr, p.rules)
			if !slices.Equal(got, want) {
				t.Errorf("%s on %s:\n got  %v\n want %v", p.stem, n, got, want)
			}
			for _, v := range res.Violations {
				fired[v.RuleID] = true
			}
		}
	}
	t.Logf("%d of 49 rules fired on %d traces", len(fired), len(traces))
	// The traces must exercise the templates, or agreeing would prove little.
	if len(fired) < 20 {
		t.Errorf("only %d rules fired on the traces: %v", len(fired), fired)
	}
}
