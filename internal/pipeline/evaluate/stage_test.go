package evaluate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/event"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/evaltest"
	"github.com/troy-audit/troy/internal/pipeline/evaluate"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/scorer"
)

// stream is an in-memory steps stream: what the bus gives the stage.
type stream struct{ events []event.Envelope }

func (s *stream) publish(t *testing.T, kind event.Kind, subject string, v event.Payload) event.Envelope {
	t.Helper()
	env, err := event.New(v)
	if err != nil || env.Kind != kind {
		t.Fatalf("%s event: %v (kind %s)", kind, err, env.Kind)
	}
	env.Subject = subject
	env.Seq = uint64(len(s.events) + 1)
	s.events = append(s.events, env)
	return env
}

func (s *stream) read(_ context.Context, subject string, upTo uint64) ([]event.Envelope, error) {
	var out []event.Envelope
	for _, e := range s.events {
		if e.Subject == subject && e.Seq <= upTo {
			out = append(out, e)
		}
	}
	return out, nil
}

// first is the stream sequence of the subject's first event, 0 when it has none.
func (s *stream) first(_ context.Context, subject string) (uint64, error) {
	for _, e := range s.events {
		if e.Subject == subject {
			return e.Seq, nil
		}
	}
	return 0, nil
}

func policyFunc(c *evaluator.Compiled) evaluate.PolicyFunc {
	return func(context.Context, string) (*evaluator.Compiled, error) { return c, nil }
}

// traceEvents turns a trace into the events an agent sends: each step without its output,
// the output a little later (sometimes after later steps), then the end.
func traceEvents(t *testing.T, r *rand.Rand, s *stream, tr *schemas.Trace, hash string) {
	ref := event.TraceRef{TraceID: tr.TraceID, AgentName: tr.AgentName, Policy: hash}
	subject := event.StepsSubject(tr.AgentName, tr.TraceID)
	var pending []*schemas.Step
	flush := func(n int) {
		for len(pending) > 0 && n > 0 {
			p := pending[0]
			pending = pending[1:]
			s.publish(t, event.KindOutput, subject, event.Output{TraceRef: ref, StepID: p.StepID, Output: p.Output})
			n--
		}
	}
	for i, st := range tr.Steps {
		bare := *st
		if len(st.Output) > 0 && r.IntN(3) > 0 {
			bare.Output = map[string]any{}
			pending = append(pending, st)
		}
		s.publish(t, event.KindStep, subject, event.Step{TraceRef: ref, TraceMetadata: tr.Metadata, Seq: i, Step: &bare})
		flush(r.IntN(3))
	}
	flush(len(pending))
	s.publish(t, event.KindEnd, subject, event.End{TraceRef: ref, Steps: len(tr.Steps)})
}

// At a trace's end, the incremental stage reports exactly what post-hoc evaluation of the
// whole trace finds, whatever the order outputs arrive in, with redeliveries, and when the
// stage restarts mid-trace and rebuilds from the stream.
func TestStageAgreesWithPostHoc(t *testing.T) {
	t.Run("conditions", func(t *testing.T) { stageAgreesWithPostHoc(t, rand.New(rand.NewPCG(21, 22)), false) })
	// Provenance reads earlier steps' outputs, which arrive late and out of order.
	t.Run("provenance", func(t *testing.T) { stageAgreesWithPostHoc(t, rand.New(rand.NewPCG(23, 24)), true) })
}

func stageAgreesWithPostHoc(t *testing.T, r *rand.Rand, provenance bool) {
	g := evaltest.NewCondGen(r)
	if provenance {
		g = g.WithProvenance()
	}
	rounds := 1000
	if testing.Short() || raceEnabled {
		rounds = 150
	}
	for round := range rounds {
		var conds []string
		for range 5 {
			conds = append(conds, g.Cond(2))
		}
		c, err := evaluator.Compile(evaltest.WithJudges(evaltest.PolicyOf(conds...), round))
		if err != nil {
			t.Fatal(err)
		}
		tr := evaltest.RandomTrace(r, 1+r.IntN(15))
		if provenance {
			evaltest.AddValues(r, tr)
		}
		tr.TraceID = fmt.Sprintf("trace.%d *", round)
		s := &stream{}
		traceEvents(t, r, s, tr, c.Hash())

		stage := evaluate.NewStage(policyFunc(c), s.read)
		var evaluated *event.Evaluated
		var scored *event.Scored
		var verdict []event.Envelope
		realtime := map[string]bool{}
		restartAt := r.IntN(len(s.events) + 1)
		for i, ev := range s.events {
			if i == restartAt {
				stage = evaluate.NewStage(policyFunc(c), s.read) // state lost
			}
			deliveries := 1 + r.IntN(2) // some events arrive twice
			for range deliveries {
				out, err := stage.Handle(context.Background(), ev)
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				for _, o := range out {
					switch o.Kind {
					case event.KindViolation:
						var v event.Violation
						if err := json.Unmarshal(o.Data, &v); err != nil {
							t.Fatal(err)
						}
						realtime[v.Violation.StepID+"/"+v.Violation.RuleID] = true
					case event.KindVerdict:
						verdict = append(verdict, o)
					case event.KindEvaluated:
						if evaluated != nil {
							t.Fatalf("round %d: the trace was evaluated twice", round)
						}
						evaluated = &event.Evaluated{}
						if err := json.Unmarshal(o.Data, evaluated); err != nil {
							t.Fatal(err)
						}
					case event.KindScored:
						if evaluated == nil || scored != nil {
							t.Fatalf("round %d: scored before evaluated, or twice", round)
						}
						scored = &event.Scored{}
						if err := json.Unmarshal(o.Data, scored); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
		if evaluated == nil || scored == nil {
			t.Fatalf("round %d: no event.Evaluated or event.Scored", round)
		}
		want := c.Evaluate(tr)
		if want.Violations == nil {
			want.Violations = []schemas.Violation{}
		}
		got, err := event.CollectVerdict(verdict, evaluated)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !slices.Equal(got, want.Violations) || !evaltest.SameFailures(evaluated.RuleErrors, want.RuleErrors) {
			t.Fatalf("round %d: incremental %v %+v\npost-hoc %v %+v\nconditions:\n%s", round,
				evaltest.IDs(got), evaluated.RuleErrors, evaltest.IDs(want.Violations), want.RuleErrors, strings.Join(conds, "\n"))
		}
		if wantRisk := scorer.Score(want.Violations, c.Weights()); scored.RiskScore != wantRisk || !reflect.DeepEqual(scored.Evaluated, *evaluated) {
			t.Fatalf("round %d: scored %d with %+v, want %d with %+v", round, scored.RiskScore, scored.Evaluated, wantRisk, *evaluated)
		}
		if restartAt == 0 || restartAt >= len(s.events) {
			for _, v := range want.Violations {
				if !realtime[v.StepID+"/"+v.RuleID] {
					t.Fatalf("round %d: violation %s/%s was never emitted as an event", round, v.StepID, v.RuleID)
				}
			}
		}
		if stage.OpenTraces() != 0 {
			t.Fatalf("round %d: state kept after the end", round)
		}
	}
}

// A violation of a rule that reads no later step is emitted when its step arrives; one
// that looks ahead, at the end.
func TestStageEmitsViolationsAsSoonAsKnown(t *testing.T) {
	c, err := evaluator.Compile(evaltest.PolicyOf(
		"step.description == 'bash'",
		"step.metadata.data_classification == 'pii' and any(next_steps, .metadata.network_zone == 'external')",
	))
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{}
	ref := event.TraceRef{TraceID: "t", AgentName: "a"}
	subj := event.StepsSubject("a", "t")
	steps := []*schemas.Step{
		{StepID: "s1", Type: "tool_call", Description: "bash"},
		{StepID: "s2", Type: "tool_call", Description: "read", Metadata: map[string]any{"data_classification": "pii"}},
		{StepID: "s3", Type: "tool_call", Description: "post", Metadata: map[string]any{"network_zone": "external"}},
	}
	stage := evaluate.NewStage(policyFunc(c), s.read)
	var got []string
	for i, st := range steps {
		out, err := stage.Handle(context.Background(), s.publish(t, event.KindStep, subj, event.Step{TraceRef: ref, Seq: i, Step: st}))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			got = append(got, fmt.Sprintf("after %s: %s", st.StepID, o.Kind))
		}
	}
	out, err := stage.Handle(context.Background(), s.publish(t, event.KindEnd, subj, event.End{TraceRef: ref, Steps: 3}))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		got = append(got, "at end: "+string(o.Kind)+" "+o.Subject)
	}
	want := "after s1: violation|at end: violation troy.results.violation.a.t|at end: verdict troy.results.verdict.a.t|at end: evaluated troy.results.evaluated.a.t|at end: scored troy.results.scored.a.t"
	if strings.Join(got, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, "|"), want)
	}
}

func TestStageRejectsBadEvents(t *testing.T) {
	c, err := evaluator.Compile(evaltest.PolicyOf("true"))
	if err != nil {
		t.Fatal(err)
	}
	stage := evaluate.NewStage(policyFunc(c), (&stream{}).read)
	for _, ev := range []event.Envelope{
		{Subject: "troy.steps.a.t", Kind: event.KindStep, Data: []byte("{not json"), Seq: 1},
		{Subject: "troy.steps.a.u", Kind: "weird", Data: []byte("{}"), Seq: 2},
		{Subject: "troy.steps.a.v", Kind: event.KindStep, Data: []byte(`{"trace_id": "v", "seq": 0}`), Seq: 3},
		// A whole step whose body names another trace than its subject.
		{Subject: "troy.steps.a.w", Kind: event.KindStep, Data: []byte(`{"trace_id": "elsewhere", "agent_name": "a", "seq": 0, "step": {"step_id": "s", "type": "tool_call", "description": "d"}}`), Seq: 4},
		{Subject: "troy.steps.a.w", Kind: event.KindEnd, Data: []byte(`{"trace_id": "w", "agent_name": "b", "steps": 1}`), Seq: 5},
	} {
		_, err := stage.Handle(context.Background(), ev)
		var perm *event.Permanent
		if err == nil || !errorsAs(err, &perm) {
			t.Errorf("%s: want a permanent error, got %v", ev.Data, err)
		}
	}
}

func errorsAs(err error, target **event.Permanent) bool {
	for err != nil {
		if p, ok := err.(*event.Permanent); ok {
			*target = p
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// An output that arrives after later steps changes what those steps' rules see.
func TestStageLateOutputReachesLaterSteps(t *testing.T) {
	c, err := evaluator.Compile(evaltest.PolicyOf("step.type == 'tool_call' and any(prev_steps, matches(.output, 'secret'))"))
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{}
	ref := event.TraceRef{TraceID: "t", AgentName: "a"}
	subj := event.StepsSubject("a", "t")
	s.publish(t, event.KindStep, subj, event.Step{TraceRef: ref, Seq: 0, Step: &schemas.Step{StepID: "s1", Type: "tool_call", Description: "read"}})
	s.publish(t, event.KindStep, subj, event.Step{TraceRef: ref, Seq: 1, Step: &schemas.Step{StepID: "s2", Type: "tool_call", Description: "send"}})
	s.publish(t, event.KindOutput, subj, event.Output{TraceRef: ref, StepID: "s1", Output: map[string]any{"text": "top secret"}})
	s.publish(t, event.KindEnd, subj, event.End{TraceRef: ref, Steps: 2})
	stage := evaluate.NewStage(policyFunc(c), s.read)
	var kinds []string
	for _, ev := range s.events {
		out, err := stage.Handle(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			kinds = append(kinds, string(o.Kind))
			if o.Kind == event.KindVerdict && !strings.Contains(string(o.Data), `"step_id":"s2"`) {
				t.Fatalf("final verdict misses s2: %s", o.Data)
			}
		}
	}
	if strings.Join(kinds, ",") != "violation,verdict,evaluated,scored" {
		t.Fatalf("events %v: the late output should raise the alert for s2 when it arrives", kinds)
	}
}

// A sender that publishes asynchronously and retries after a failover can store a block
// of a trace's events before an earlier block. Events that cannot be applied yet fail and
// come back later, as the consumer redelivers them; in the end the stage reports what
// post-hoc evaluation finds, and each trace once.
func TestStageToleratesEventsStoredOutOfOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 8))
	g := evaltest.NewCondGen(r)
	for round := range 300 {
		var conds []string
		for range 4 {
			conds = append(conds, g.Cond(2))
		}
		c, err := evaluator.Compile(evaltest.PolicyOf(conds...))
		if err != nil {
			t.Fatal(err)
		}
		tr := evaltest.RandomTrace(r, 2+r.IntN(12))
		tr.TraceID = fmt.Sprintf("reordered.%d", round)
		sent := &stream{}
		traceEvents(t, r, sent, tr, c.Hash())
		// Store a later block first.
		n := len(sent.events)
		a := r.IntN(n - 1)
		b := a + 1 + r.IntN(n-a-1)
		order := append(append(slices.Clone(sent.events[a:b]), sent.events[:a]...), sent.events[b:]...)
		s := &stream{}
		for i, e := range order {
			e.Seq = uint64(i + 1)
			s.events = append(s.events, e)
		}
		// Restart at a random point, and right before the trace's first step is delivered:
		// an instance that applied it while rebuilding for a later step, then stopped, must
		// not leave the next instance starting the trace afresh from it.
		first := slices.IndexFunc(s.events, func(e event.Envelope) bool {
			st, err := event.Decode[event.Step](e)
			return err == nil && st.Seq == 0
		})
		for _, restartAt := range []int{r.IntN(len(s.events) + 1), first} {
			// Half the rounds ask for the subject's first event as the bus does.
			var opts []evaluate.StageOption
			if round%2 == 0 {
				opts = append(opts, evaluate.WithFirst(s.first))
			}
			stage := evaluate.NewStage(policyFunc(c), s.read, opts...)
			queue := slices.Clone(s.events)
			var evaluated *event.Evaluated
			var verdict []event.Envelope
			for i := 0; len(queue) > 0; i++ {
				if i > 20*len(s.events) {
					t.Fatalf("round %d: events never all applied; left: %d", round, len(queue))
				}
				if i == restartAt {
					stage = evaluate.NewStage(policyFunc(c), s.read, opts...)
				}
				ev := queue[0]
				queue = queue[1:]
				out, err := stage.Handle(context.Background(), ev)
				if err != nil {
					var perm *event.Permanent
					if errorsAs(err, &perm) {
						t.Fatalf("round %d: %v", round, err)
					}
					queue = append(queue, ev) // redelivered later
					continue
				}
				for _, o := range out {
					if o.Kind == event.KindVerdict {
						verdict = append(verdict, o)
					}
					if o.Kind == event.KindEvaluated {
						if evaluated != nil {
							t.Fatalf("round %d: evaluated twice", round)
						}
						evaluated = &event.Evaluated{}
						if err := json.Unmarshal(o.Data, evaluated); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			want := c.Evaluate(tr)
			if want.Violations == nil {
				want.Violations = []schemas.Violation{}
			}
			if evaluated == nil {
				t.Fatalf("round %d (block %d:%d first): not evaluated", round, a, b)
			}
			got, err := event.CollectVerdict(verdict, evaluated)
			if err != nil || !slices.Equal(got, want.Violations) || evaluated.Steps != len(tr.Steps) {
				t.Fatalf("round %d (block %d:%d first): got %v %+v (%v)\nwant %v", round, a, b, evaltest.IDs(got), evaluated, err, evaltest.IDs(want.Violations))
			}
		}
	}
}
