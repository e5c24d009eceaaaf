package pipeline_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/internal/pipeline/pipelinetest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
	"github.com/troy-audit/troy/sdk/llmtest"
)

func merged(t *testing.T) *evaluator.Compiled {
	t.Helper()
	all, err := policies.Templates()
	if err != nil {
		t.Fatal(err)
	}
	var ps []*policies.Policy
	for _, tp := range all {
		ps = append(ps, tp.Policy)
	}
	c, err := evaluator.Compile(policies.Merge("all", "", ps...))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clientFor stores a policy and starts a client that audits traces under it, until the
// test ends.
func clientFor(t *testing.T, ctx context.Context, b *bus.Bus, pol *pipeline.Policies, c *evaluator.Compiled, opts pipeline.ClientOptions) *pipeline.Client {
	t.Helper()
	hash, err := pol.Put(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	client, err := pipeline.NewClient(ctx, b, hash, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

// start runs a pipeline on a fresh in-memory bus until the test ends.
func start(t *testing.T, cfg pipeline.Config) (*bus.Bus, *pipeline.Policies, *pipeline.Pipeline) {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close) // after the stages stop: cleanups run last first
	pol := pipeline.NewPolicies(b)
	p, done := pipelinetest.Run(t, b, pol, cfg)
	select {
	case <-p.Ready(): // the guard, if it runs, answers
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("the pipeline stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the pipeline was not ready within 30s")
	}
	return b, pol, p
}

// results delivers the result events on subject, decoded, from now until ctx ends.
func results[T any](ctx context.Context, b *bus.Bus, subject string) <-chan T {
	out := make(chan T, 16)
	ready, _ := b.Subscribe(ctx, bus.ResultsStream, subject, func(e event.Envelope) {
		var v T
		if json.Unmarshal(e.Data, &v) == nil {
			out <- v
		}
	})
	<-ready
	return out
}

// Audits through the pipeline are the audits of the in-process engine.
func TestPipelineAuditsEqualInProcess(t *testing.T) {
	b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Explainer}, ExplainNote: "n"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := merged(t)
	client := clientFor(t, ctx, b, pol, c, pipeline.ClientOptions{Purge: true})
	remote := &pipeline.Auditor{Client: client, Info: pipeline.InfoOf(c)}
	g := tracegen.New(tracegen.Options{Steps: 30, Seed: 5, BadRate: 0.1})
	traces := make([]*schemas.Trace, 40)
	for i := range traces {
		traces[i] = g.Trace()
	}
	traces[7].TraceID = traces[3].TraceID // the same trace id twice, at once
	errs := make(chan error, len(traces))
	for _, tr := range traces {
		go func() {
			got, err := remote.Audit(ctx, tr)
			if err != nil {
				errs <- err
				return
			}
			want := audit.Result(c, tr, "n")
			a, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if string(a) != string(w) {
				errs <- fmt.Errorf("trace %s: pipeline %s\nin process %s", tr.TraceID, a, w)
				return
			}
			errs <- nil
		}()
	}
	for range traces {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// The reporter writes one report per trace, read back from the stream, and says so.
func TestReporterWritesReports(t *testing.T) {
	dir := t.TempDir()
	sg := testSigner(t)
	b, pol, p := start(t, pipeline.Config{ReportDir: dir, IdleTimeout: 200 * time.Millisecond, Signer: sg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := merged(t)
	if _, err := pol.SetDefault(ctx, c); err != nil {
		t.Fatal(err)
	}
	tr := tracegen.New(tracegen.Options{Steps: 5, Seed: 9, BadRate: 0.5}).Trace()
	tr.TraceID = "session one"
	reported := results[event.Reported](ctx, b, "troy.results.reported.>")
	// A live agent's steps: no policy named (the default applies), no end sent (the idle
	// timeout closes the trace).
	publishSteps(t, ctx, b, event.TraceRef{TraceID: tr.TraceID, AgentName: tr.AgentName}, tr)
	var r event.Reported
	select {
	case r = <-reported:
	case <-ctx.Done():
		t.Fatal("no report")
	}
	want := audit.Result(c, tr, "")
	raw, err := os.ReadFile(r.AuditJSON)
	if err != nil {
		t.Fatal(err)
	}
	var got schemas.AuditResult
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.RiskScore != want.RiskScore || !reflect.DeepEqual(got.Violations, want.Violations) || got.Info.PolicyHash != c.Hash() {
		t.Fatalf("report %+v\nwant %+v", got, want)
	}
	if filepath.Dir(r.AuditJSON) != filepath.Join(dir, schemas.Token(tr.AgentName), "session~20one") {
		t.Fatalf("report at %s", r.AuditJSON)
	}
	// Both files verify with the service's key, and the steps' digest is the one an
	// in-process audit of the same trace signs.
	st := verifyReports(t, r, sg)
	local := t.TempDir()
	if err := reporter.WriteAudit(want, reporter.Dest{Markdown: filepath.Join(local, "report.md"), JSON: filepath.Join(local, "audit.json"), Signer: sg}); err != nil {
		t.Fatal(err)
	}
	localJSON, _ := os.ReadFile(filepath.Join(local, "audit.json"))
	if lst, err := reporter.VerifyAudit(localJSON, nil); err != nil || lst.Steps != st.Steps || lst.Policy != st.Policy || *lst.RiskScore != *st.RiskScore {
		t.Errorf("in-process audit signs steps %s policy %s, the stage %s %s (%v)", lst.Steps, lst.Policy, st.Steps, st.Policy, err)
	}
	if p.Eval.OpenTraces() != 0 {
		t.Fatal("the idle trace should be closed")
	}
}

// Malformed events on the steps subject go to the dead-letter subject with the reason, and
// the pipeline goes on.
func TestMalformedEventsAreDeadLettered(t *testing.T) {
	b, pol, p := start(t, pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Explainer}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := merged(t)
	hash, err := pol.Put(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	bad := []event.Envelope{
		{Subject: "troy.steps.a.json", Kind: event.KindStep, Data: []byte(`{"trace_id": "json", "seq": 0, "step": {`)},
		{Subject: "troy.steps.a.kind", Kind: "telemetry", Data: []byte(`{"trace_id": "kind"}`)},
		{Subject: "troy.steps.a.big", Kind: event.KindStep, Data: []byte(`{"pad": "` + strings.Repeat("x", bus.MaxEventSize) + `"}`)},
	}
	for _, e := range bad {
		if err := b.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	client, err := pipeline.NewClient(ctx, b, hash, pipeline.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	tr := tracegen.New(tracegen.Options{Steps: 5, Seed: 1}).Trace()
	if _, err := client.Audit(ctx, tr); err != nil {
		t.Fatalf("a good trace after bad events: %v", err)
	}
	for p.Stats[pipeline.Evaluator].Dead.Load() < 3 {
		if ctx.Err() != nil {
			t.Fatal("dead letters missing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	dead, err := b.Read(ctx, bus.DeadStream, event.DeadSubject(pipeline.Evaluator), math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, d := range dead {
		var dl event.DeadLetter
		if err := json.Unmarshal(d.Data, &dl); err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, dl.Subject+": "+dl.Error)
	}
	got := strings.Join(reasons, "\n")
	for _, want := range []string{
		"troy.steps.a.json: decode step event: unexpected end of JSON input",
		`troy.steps.a.kind: unknown event kind "telemetry"`,
		"troy.steps.a.big: event of 1048587 bytes is over the 1048576-byte limit",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("dead letters lack %q:\n%s", want, got)
		}
	}
}

// A change of the policy file given to the server is picked up while it runs: traces that
// start afterwards are evaluated with the new revision, and each result names its
// revision. A change that does not load is refused and counted; the running one stays.
func TestServerReloadsThePolicyFile(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := filepath.Join(t.TempDir(), "policy.json")
	policy := func(rule string) string {
		return `{"policy_id": "reloaded", "rules": [{"rule_id": "` + rule + `", "description": "first step", "condition": "step_index == 0", "severity": "low"}]}`
	}
	write := func(doc string) {
		t.Helper()
		// Written in place, as many editors do: the server must not take a half-written
		// file for a revision.
		if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(policy("first-revision"))
	srv, stop := runServer(t, ctx, b, pipeline.ServeConfig{
		Config:      pipeline.Config{Only: []string{pipeline.Evaluator}},
		Policy:      file,
		Reload:      10 * time.Millisecond,
		MetricsAddr: "127.0.0.1:0",
	})
	defer stop()
	scored := results[event.Scored](ctx, b, "troy.results.scored.>")
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// audit sends a trace that names no policy, as a live agent does, and returns its result.
	audit := func(id string) event.Scored {
		t.Helper()
		tr := tracegen.New(tracegen.Options{Steps: 3, Seed: 2}).Trace()
		ref := event.TraceRef{TraceID: id, AgentName: tr.AgentName}
		var events []event.Envelope
		for i, s := range tr.Steps {
			e, err := event.New(event.Step{TraceRef: ref, Seq: i, Step: s})
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, e)
		}
		end, err := event.New(event.End{TraceRef: ref, Steps: len(tr.Steps), Reason: "end"})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range append(events, end) {
			if err := b.Publish(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case s := <-scored:
			if s.TraceID != id {
				t.Fatalf("result of %s, want %s", s.TraceID, id)
			}
			return s
		case <-ctx.Done():
			t.Fatalf("no result for %s", id)
		}
		return event.Scored{}
	}
	check := func(s event.Scored, rule, hash string) {
		t.Helper()
		if s.Violations != 1 || len(s.Rules) != 1 || s.Rules[0] != rule || s.Policy != hash {
			t.Fatalf("trace %s: %d violations of %v under policy %s, want %s under %s", s.TraceID, s.Violations, s.Rules, s.Policy, rule, hash)
		}
	}
	waitUntil("the first revision", func() bool { return srv.DefaultPolicy() != "" })
	first := srv.DefaultPolicy()
	check(audit("before"), "first-revision", first)

	write(policy("second-revision"))
	waitUntil("the second revision", func() bool { return srv.DefaultPolicy() != first })
	second := srv.DefaultPolicy()
	check(audit("after"), "second-revision", second)

	write(`{"policy_id": "broken", "rules": [{"rule_id": "x", "condition": "step.input ==", "severity": "low"}]}`)
	waitUntil("the refused revision to be counted", func() bool {
		return strings.Contains(scrape(t, srv.MetricsURL()+"/metrics"), `troy_policy_reloads_total{result="refused"} 1`)
	})
	if srv.DefaultPolicy() != second {
		t.Fatal("a policy that does not load replaced the running one")
	}
	check(audit("after a bad change"), "second-revision", second)
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// A guard session id used again after its end is a new trace (a new run): each sending is
// evaluated with its own steps, and none of the second's steps is taken for a retry of the
// first's.
func TestGuardSessionReusedAfterEnd(t *testing.T) {
	b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Guard}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := policies.Parse([]byte(`{"rules": [{"rule_id": "first", "description": "d", "condition": "step_index == 0", "severity": "low"}]}`), "p.json", "p")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pol.SetDefault(ctx, c); err != nil {
		t.Fatal(err)
	}
	scored := results[event.Scored](ctx, b, "troy.results.scored.>")
	g := agent.New(b.Conn()).Guard(agent.GuardOptions{Session: "reused", Agent: "bot", Mode: schemas.ModeMonitor})
	var runs []event.Scored
	for _, steps := range []int{3, 2} {
		for i := range steps {
			if _, err := g.Check(ctx, fmt.Sprint("tool-", i), nil, nil, ""); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.End(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-scored:
			runs = append(runs, s)
		case <-ctx.Done():
			t.Fatal("no result")
		}
	}
	if runs[0].Steps != 3 || runs[1].Steps != 2 {
		t.Fatalf("steps per sending: %d and %d, want 3 and 2", runs[0].Steps, runs[1].Steps)
	}
	if runs[0].Run == "" || runs[0].Run == runs[1].Run {
		t.Fatalf("runs %q and %q should differ", runs[0].Run, runs[1].Run)
	}
	for _, r := range runs {
		vs, err := b.Verdict(ctx, &r.Evaluated)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].RuleID != "first" {
			t.Fatalf("run %s: violations %+v, want one at its first step", r.Run, vs)
		}
	}
}

// With a model, the explainer stage explains each finished trace and the reporter writes
// the explanations, the summary and the raw replies; clients get them too.
func TestExplainerStageFeedsTheReporter(t *testing.T) {
	model := llmtest.NewServer(llmtest.Explains)
	defer model.Close()
	dir := t.TempDir()
	ex := explainer.New(explainer.Config{BaseURL: model.URL + "/v1", APIKey: "test", Backoff: time.Millisecond})
	sg := testSigner(t)
	b, pol, _ := start(t, pipeline.Config{ReportDir: dir, Explain: ex, Signer: sg})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := merged(t)
	reported := results[event.Reported](ctx, b, "troy.results.reported.>")
	client := clientFor(t, ctx, b, pol, c, pipeline.ClientOptions{})
	tr := tracegen.New(tracegen.Options{Steps: 4, Seed: 3}).Trace()
	res, err := client.Audit(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	ev, steps := res.Explained, res.Explanations
	if ev.State != schemas.ExplanationsOn || len(steps) != 4 || ev.Summary == nil || ev.LLM == nil || ev.LLM.Calls != 5 {
		t.Fatalf("explained: state %s, %d steps, usage %+v", ev.State, len(steps), ev.LLM)
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
	var got schemas.AuditResult
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Explanations) != 4 || got.Summary == nil || got.Info.LLM == nil || !reflect.DeepEqual(got.Explanations, steps) {
		t.Fatalf("audit.json explanations %+v", got.Explanations)
	}
	verifyReports(t, r, sg)
	for _, s := range tr.Steps {
		if _, err := os.Stat(filepath.Join(filepath.Dir(r.AuditJSON), "llm_responses", "step_"+s.StepID+".txt")); err != nil {
			t.Fatal(err)
		}
	}
}

// Scoring is part of evaluation: a deployment upgraded from a version that ran a scorer
// stage loses its durable consumer when the evaluator starts, and traces are scored and
// explained without it. --only still takes the name, and runs nothing for it.
func TestRetiredScorerConsumerIsDeleted(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	// As the scorer stage declared it.
	if _, err := js.CreateConsumer(ctx, bus.ResultsStream, jetstream.ConsumerConfig{
		Durable: "scorer", AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: []string{event.ResultFilter(event.KindEvaluated)},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.New(b, pipeline.NewPolicies(b), pipeline.Config{Only: []string{"scorer"}}); err == nil || !strings.Contains(err.Error(), "component scorer is part of the evaluator") {
		t.Fatalf("--only scorer alone: got %v", err)
	}
	pol := pipeline.NewPolicies(b)
	p, err := pipeline.New(b, pol, pipeline.Config{Only: []string{pipeline.Evaluator, "scorer", pipeline.Explainer}, ExplainNote: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Stats["scorer"]; ok {
		t.Fatal("a component runs for the scorer")
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	client := clientFor(t, ctx, b, pol, everyStep(t, 2), pipeline.ClientOptions{})
	res, err := client.Audit(ctx, tracegen.New(tracegen.Options{Steps: 3, Seed: 1}).Trace())
	if err != nil {
		t.Fatal(err)
	}
	if res.Explained.RiskScore != 2 {
		t.Fatalf("risk score %d, want 2 (two rules of weight 1)", res.Explained.RiskScore)
	}
	// The evaluator deletes it before it consumes: the trace was evaluated, so it is gone.
	if _, err := b.Lag(ctx, bus.ResultsStream, "scorer"); !bus.IsNotFound(err) {
		t.Fatalf("the scorer's consumer is still there: %v", err)
	}
}

func testSigner(t *testing.T) *reporter.Signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &reporter.Signer{Key: key, Version: "test"}
}

// verifyReports checks that the report.md and audit.json the reporter wrote verify with
// sg's key, and that the audit names its report.
func verifyReports(t *testing.T, r event.Reported, sg *reporter.Signer) reporter.Statement {
	t.Helper()
	pub := sg.Key.Public().(ed25519.PublicKey)
	md, err1 := os.ReadFile(r.Report)
	js, err2 := os.ReadFile(r.AuditJSON)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := reporter.VerifyReport(md, pub); err != nil {
		t.Errorf("%s: %v", r.Report, err)
	}
	st, err := reporter.VerifyAudit(js, pub)
	if err != nil || st.Report != reporter.ReportDigest(md) || st.TraceID != r.TraceID {
		t.Errorf("%s: %v %+v", r.AuditJSON, err, st)
	}
	return st
}
