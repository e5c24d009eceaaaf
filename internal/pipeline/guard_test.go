package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"

	"github.com/nats-io/nats.go/jetstream"
)

func compilePolicy(t *testing.T, doc string) *evaluator.Compiled {
	t.Helper()
	p, err := policies.Parse([]byte(doc), "p.json", "p")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The guard service over NATS: a rule that cannot be evaluated blocks in enforce mode
// unless the service's or the policy's setting is skip (the service's wins), every mode
// lists it, and the Go SDK reports it.
func TestGuardServiceRuleErrors(t *testing.T) {
	const rule = `{"rule_id": "tokens", "description": "too many tokens", "condition": "step.metadata.total_tokens > 100000", "weight": 30}`
	blockPolicy := `{"rules": [` + rule + `]}`
	skipPolicy := `{"on_rule_error": "skip", "rules": [` + rule + `]}`
	tests := []struct {
		name, service, policy, mode string
		tokens                      any
		allowed                     bool
		errors                      int
	}{
		{name: "enforce blocks", policy: blockPolicy, mode: "enforce", tokens: "200000", errors: 1},
		{name: "a number violates", policy: blockPolicy, mode: "enforce", tokens: 200000},
		{name: "infinity violates", policy: blockPolicy, mode: "enforce", tokens: math.Inf(1)},
		{name: "NaN passes", policy: blockPolicy, mode: "enforce", tokens: math.NaN(), allowed: true},
		{name: "monitor allows", policy: blockPolicy, mode: "monitor", tokens: "200000", allowed: true, errors: 1},
		{name: "dry-run allows", policy: blockPolicy, mode: "dry-run", tokens: "200000", allowed: true, errors: 1},
		{name: "the policy skips", policy: skipPolicy, mode: "enforce", tokens: "200000", allowed: true, errors: 1},
		{name: "the service's block wins", service: "block", policy: skipPolicy, mode: "enforce", tokens: "200000", errors: 1},
		{name: "the service's skip wins", service: "skip", policy: blockPolicy, mode: "enforce", tokens: "200000", allowed: true, errors: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Guard}, OnRuleError: tt.service})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := pol.SetDefault(ctx, compilePolicy(t, tt.policy)); err != nil {
				t.Fatal(err)
			}
			g := agent.New(b.Conn()).Guard(agent.GuardOptions{Session: "s", Agent: "bot", Mode: tt.mode})
			d, err := g.Check(ctx, "chat", nil, map[string]any{"total_tokens": tt.tokens}, schemas.StepLLMCall)
			var blocked *agent.BlockedError
			if tt.allowed != (err == nil) || !tt.allowed && !errors.As(err, &blocked) {
				t.Fatalf("got %v, want allowed %v", err, tt.allowed)
			}
			if d.Allowed != tt.allowed || d.Mode != tt.mode || len(d.RuleErrors) != tt.errors || d.RuleErrors == nil {
				t.Fatalf("decision %+v", d)
			}
			if tt.errors > 0 {
				if e := d.RuleErrors[0]; e.RuleID != "tokens" || !strings.Contains(e.Error, "invalid operation: string > int") {
					t.Fatalf("rule error %+v", e)
				}
				if blocked != nil && !strings.Contains(blocked.Error(), "rule tokens could not be evaluated: ") {
					t.Fatalf("the SDK's error should name the rule: %v", blocked)
				}
			}
		})
	}
	if _, err := pipeline.New(nil, nil, pipeline.Config{OnRuleError: "ignore"}); err == nil || !strings.Contains(err.Error(), `on rule error "ignore": choose block or skip`) {
		t.Fatalf("got %v", err)
	}
}

// Numbers in guard requests are read as Python's json reads them, whichever the sender:
// raw JSON over NATS (a Python agent writes NaN and Infinity) or the Go SDK. The session's
// audit.json keeps them as they were (digit for digit, Python's literals), lists the rule
// errors, and reads back through replay.
func TestGuardSessionNumbersAndRuleErrorsReachTheAudit(t *testing.T) {
	dir := t.TempDir()
	b, pol, _ := start(t, pipeline.Config{ReportDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := compilePolicy(t, `{"rules": [
		{"rule_id": "amount", "description": "large amount", "condition": "step.input.amount > 1000", "weight": 40},
		{"rule_id": "tokens", "description": "too many tokens", "condition": "(step.metadata.total_tokens ?? 0) > 100000", "weight": 30}]}`)
	if _, err := pol.SetDefault(ctx, c); err != nil {
		t.Fatal(err)
	}
	reported := results[event.Reported](ctx, b, "troy.results.reported.>")
	big := "123456789012345678901234567890"
	for i, body := range []string{
		`{"session": "nums", "agent": "py", "seq": 0, "step": {"action": "pay", "input": {"amount": 1e999999}}}`,
		`{"session": "nums", "agent": "py", "seq": 1, "step": {"action": "pay", "input": {"amount": ` + big + `}}}`,
		`{"session": "nums", "agent": "py", "seq": 2, "step": {"action": "pay", "input": {"amount": NaN, "limit": -Infinity}}}`,
		`{"session": "nums", "agent": "py", "seq": 3, "step": {"action": "pay", "input": {"amount": 5.0}, "metadata": {"total_tokens": "200000"}}}`,
	} {
		out, err := b.Request(ctx, event.GuardCheckSubject("py"), []byte(body))
		if err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
		var d schemas.Decision
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatal(err)
		}
		want := []bool{false, false, true, false}[i]
		if d.Allowed != want {
			t.Fatalf("check %d: %+v, want allowed %v", i, d, want)
		}
		if i == 3 && (len(d.RuleErrors) != 1 || len(d.Violations) != 0) {
			t.Fatalf("check 3: %+v, want blocked for its rule error alone", d)
		}
	}
	// A body naming another agent than its subject is refused: permissions on the
	// subject would mean nothing otherwise.
	for _, subject := range []string{event.GuardCheckSubject("other"), event.GuardOutputSubject("other"), event.GuardEndSubject("other")} {
		_, err := b.Request(ctx, subject, []byte(`{"session": "nums", "agent": "py", "step_id": "s", "step": {"action": "pay"}}`))
		var re *bus.RequestError
		if !errors.As(err, &re) || re.Code != "403" {
			t.Fatalf("%s with agent py: %v, want a 403", subject, err)
		}
	}
	// A policy revision handed to the guard is stored under its own content hash only: a
	// document that does not hash to the key it names, or does not compile, is refused,
	// and the default stays as it was.
	def, err := pol.Default(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := compilePolicy(t, `{"rules": [{"rule_id": "r", "description": "d", "condition": "step.description == 'x'"}]}`)
	doc, err := other.Policy().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  event.GuardPolicy
		code string
	}{
		{"wrong hash", event.GuardPolicy{Policy: pipeline.DefaultKey, Document: doc}, "400"},
		{"not a policy", event.GuardPolicy{Policy: other.Hash(), Document: []byte(`{"rules": [{"rule_id": "r", "condition": "("}]}`)}, "400"},
		{"stored", event.GuardPolicy{Policy: other.Hash(), Document: doc}, ""},
	} {
		body, _ := json.Marshal(tc.req)
		_, err := b.Request(ctx, event.GuardPolicySubject("py"), body)
		var re *bus.RequestError
		if tc.code == "" && err != nil || tc.code != "" && (!errors.As(err, &re) || re.Code != tc.code) {
			t.Fatalf("%s: %v, want code %q", tc.name, err, tc.code)
		}
	}
	if got, err := b.GetPolicy(ctx, other.Hash()); err != nil || len(got) == 0 {
		t.Fatalf("the revision was not stored: %v", err)
	}
	if now, _ := pol.Default(ctx); now != def {
		t.Fatalf("the default changed from %s to %s", def, now)
	}
	if _, err := b.Request(ctx, event.GuardEndSubject("py"), []byte(`{"session": "nums", "agent": "py"}`)); err != nil {
		t.Fatal(err)
	}
	var r event.Reported
	select {
	case r = <-reported:
	case <-ctx.Done():
		t.Fatal("no report")
	}
	raw, err := os.ReadFile(r.AuditJSON)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"amount": Infinity`, `"amount": ` + big, `"amount": NaN`, `"limit": -Infinity`, `"amount": 5.0`, `"rule_errors": [`, `"first_step_id": "step-3"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("audit.json lacks %s:\n%s", want, raw)
		}
	}
	a, err := ingest.LoadAudit(r.AuditJSON)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Trace.Steps[1].Input["amount"]; got == nil || got.(interface{ String() string }).String() != big {
		t.Fatalf("replayed amount %v", got)
	}
	if f, ok := a.Trace.Steps[0].Input["amount"].(float64); !ok || !math.IsInf(f, 1) {
		t.Fatalf("replayed infinity %v", a.Trace.Steps[0].Input["amount"])
	}
	if len(a.Info.RuleErrors) != 1 || a.Info.RuleErrors[0].RuleID != "tokens" || a.RiskScore != 40 {
		t.Fatalf("replayed audit: %+v risk %d", a.Info.RuleErrors, a.RiskScore)
	}
}

// A bundled template named by an SDK (by file stem or policy id) decides the check, and is
// stored under its hash as any policy is, for the stages that read the session's events.
func TestGuardTemplateByName(t *testing.T) {
	b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Guard}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tmpl, err := policies.LookupTemplate("soc2")
	if err != nil {
		t.Fatal(err)
	}
	want, err := evaluator.Compile(tmpl.Policy)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"soc2", "soc2-trust-services"} {
		g := agent.New(b.Conn()).Guard(agent.GuardOptions{Session: "s-" + name, Agent: "bot", Policy: name})
		d, err := g.Check(ctx, "deploy", nil, map[string]any{"permission_level": "admin"}, schemas.StepToolCall)
		var blocked *agent.BlockedError
		if !errors.As(err, &blocked) || d.Allowed || len(d.Violations) == 0 || d.Violations[0].RuleID != "soc2-access-control" {
			t.Fatalf("%s: %v %+v", name, err, d)
		}
	}
	if _, err := b.GetPolicy(ctx, want.Hash()); err != nil {
		t.Fatalf("the template is not stored under its hash: %v", err)
	}
	if c, err := pol.Compiled(ctx, "soc2"); err != nil || c.Hash() != want.Hash() {
		t.Fatalf("by name: %v", err)
	}
	if _, err := pol.Compiled(ctx, "no-such-template"); err == nil {
		t.Fatal("a name that is no template must not resolve")
	}
}

// A step the stream does not take is never answered "allowed": the guard answers 503 when
// the store fails, in every mode.
func TestGuardFailsClosedWhenTheStepIsNotStored(t *testing.T) {
	for _, mode := range schemas.Modes() {
		t.Run(mode, func(t *testing.T) {
			b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Guard}})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := pol.SetDefault(ctx, compilePolicy(t, `{"rules": []}`)); err != nil {
				t.Fatal(err)
			}
			g := agent.New(b.Conn()).Guard(agent.GuardOptions{Session: "s", Agent: "bot", Mode: mode})
			if d, err := g.Check(ctx, "read_file", nil, nil, ""); err != nil || !d.Allowed {
				t.Fatalf("with the stream: %+v, %v; want allowed", d, err)
			}
			js, err := jetstream.New(b.Conn())
			if err != nil {
				t.Fatal(err)
			}
			if err := js.DeleteStream(ctx, bus.StepsStream); err != nil {
				t.Fatal(err)
			}
			d, err := g.Check(ctx, "read_file", nil, nil, "")
			var unavailable *agent.UnavailableError
			if !errors.As(err, &unavailable) || d.Allowed || !strings.Contains(err.Error(), "503") {
				t.Fatalf("without the stream: %+v, %v; want not allowed, unavailable (503)", d, err)
			}
		})
	}
}

// Concurrent checks, whose stores the guard batches: every check answered is in the
// stream, in its session's order; and once the stream is gone, every concurrent check is
// refused as unavailable, none allowed.
func TestGuardConcurrentChecksAreStoredOrRefused(t *testing.T) {
	b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Guard}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := pol.SetDefault(ctx, compilePolicy(t, `{"rules": []}`)); err != nil {
		t.Fatal(err)
	}
	const sessions, checks = 16, 10
	conn := agent.New(b.Conn())
	guards := make([]*agent.Guard, sessions)
	for i := range guards {
		guards[i] = conn.Guard(agent.GuardOptions{Session: fmt.Sprint("s", i), Agent: "bot", Mode: schemas.ModeEnforce})
	}
	// checkAll makes n checks in every session at once and returns each session's errors.
	checkAll := func(n int) [][]error {
		errs := make([][]error, sessions)
		var wg sync.WaitGroup
		for i, g := range guards {
			wg.Go(func() {
				for range n {
					d, err := g.Check(ctx, "read_file", map[string]any{"path": "a"}, nil, "")
					if err == nil && !d.Allowed {
						err = fmt.Errorf("not allowed without rules: %+v", d)
					}
					errs[i] = append(errs[i], err)
				}
			})
		}
		wg.Wait()
		return errs
	}
	for i, errs := range checkAll(checks) {
		for _, err := range errs {
			if err != nil {
				t.Fatalf("session s%d: %v", i, err)
			}
		}
		events, err := b.ReadSteps(ctx, event.StepsSubject("bot", fmt.Sprint("s", i)), math.MaxUint64)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != checks {
			t.Fatalf("session s%d: %d events stored for %d checks answered", i, len(events), checks)
		}
		for seq, e := range events {
			step, err := event.Decode[event.Step](e)
			if err != nil || step.Seq != seq {
				t.Errorf("session s%d, event %d: seq %d, %v; want seq %d", i, seq, step.Seq, err, seq)
			}
		}
	}
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, bus.StepsStream); err != nil {
		t.Fatal(err)
	}
	for i, errs := range checkAll(1) {
		var unavailable *agent.UnavailableError
		if !errors.As(errs[0], &unavailable) || !strings.Contains(errs[0].Error(), "503") {
			t.Errorf("session s%d without the stream: %v; want unavailable (503)", i, errs[0])
		}
	}
}
