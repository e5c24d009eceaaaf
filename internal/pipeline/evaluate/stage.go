// Package evaluate is the evaluator stage: a trace's events from the steps stream to its
// verdict and score. It follows each trace with an incremental evaluator.Session, rebuilds
// a trace it has no state for from the stream, remembers the traces it finished recently,
// and closes traces that went idle.
package evaluate

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/scorer"
)

// PolicyFunc returns the compiled policy with the given content hash; an empty hash asks
// for the current default.
type PolicyFunc func(ctx context.Context, hash string) (*evaluator.Compiled, error)

// Stage is the evaluator stage of the pipeline. It consumes a trace's events (steps,
// outputs, end) in order and evaluates incrementally: each step is evaluated when it
// arrives by the rules that read no later step, and their violations are emitted at once;
// rules that look ahead are evaluated when the trace ends. At the end it emits
// event.Evaluated, whose violations and failures are those of a post-hoc evaluation of the
// whole trace, then event.Scored, the trace's risk score. State per trace is a cache: a
// trace the stage has not seen is rebuilt from the stream.
//
// The verdict of a finished trace is counted in event.Evaluated and its violations travel
// in VerdictPart events of bounded size before it.
//
// Handle is safe for concurrent use; events of one trace must be handled in stream order.
type Stage struct {
	policy  PolicyFunc
	read    event.ReadFunc
	first   FirstFunc
	alerts  bool // publish violations as soon as known
	judge   evaluator.Judge
	verdict VerdictFunc

	mu       sync.Mutex
	runs     map[string]*traceRun // by steps subject and run
	finished *recent              // keys of traces recently ended
}

// StageOption tunes an evaluator stage.
type StageOption func(*Stage)

// WithoutAlerts leaves out the real-time violation events, for runs that nobody watches
// (a one-shot audit): only the verdict at the end is published.
func WithoutAlerts() StageOption { return func(st *Stage) { st.alerts = false } }

// FirstFunc returns the stream sequence of the first event stored on a subject of the
// steps stream, 0 when there is none.
type FirstFunc func(ctx context.Context, subject string) (uint64, error)

// WithFirst lets the stage ask, when a trace starts, whether events of it were stored
// before its first step with one cheap request, instead of reading them.
func WithFirst(first FirstFunc) StageOption { return func(st *Stage) { st.first = first } }

// WithJudge gives the verdicts of judge rules from j, before a trace's verdict and score
// are published; without it such rules are recorded as not evaluated.
func WithJudge(j evaluator.Judge) StageOption { return func(st *Stage) { st.judge = j } }

// VerdictFunc hears the verdict of each trace the stage finishes.
type VerdictFunc func(violations []schemas.Violation, ruleErrors []schemas.RuleError)

// WithVerdicts has f hear the verdict of each trace finished, as its events are handed
// back (an end delivered again after a failed publish is heard again), so that it is
// counted without decoding the events.
func WithVerdicts(f VerdictFunc) StageOption { return func(st *Stage) { st.verdict = f } }

// NewStage returns an evaluator stage.
func NewStage(policy PolicyFunc, read event.ReadFunc, opts ...StageOption) *Stage {
	st := &Stage{policy: policy, read: read, alerts: true, runs: map[string]*traceRun{}, finished: newRecent(100_000)}
	for _, o := range opts {
		o(st)
	}
	return st
}

// traceRun is the state of one trace being evaluated.
type traceRun struct {
	mu      sync.Mutex
	key     string // subject and run
	subject string
	ref     event.TraceRef
	s       *evaluator.Session // nil until the first step
	emitted map[string]bool    // violations already emitted, by step and rule
	alerts  bool               // emit violations as soon as known
	last    time.Time          // when the last event arrived
}

// steps is the number of steps applied.
func (run *traceRun) steps() int {
	if run.s == nil {
		return 0
	}
	return run.s.Len()
}

// OpenTraces is the number of traces with state.
func (st *Stage) OpenTraces() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.runs)
}

// Handle applies one event of the steps stream and returns the events it produces.
func (st *Stage) Handle(ctx context.Context, in event.Envelope) ([]event.Envelope, error) {
	ev, err := decodeEvent(in)
	if err != nil {
		return nil, err
	}
	run, rebuilt, err := st.runFor(ctx, ev)
	if err != nil || run == nil {
		return nil, err
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	out, err := run.apply(ctx, st, ev) // a redelivery of an event already applied does nothing
	out = append(rebuilt, out...)
	if err != nil {
		var perm *event.Permanent
		if !errors.As(err, &perm) {
			st.drop(run.key) // rebuilt from the stream when the event comes back
		}
		return nil, err
	}
	if in.Kind == event.KindEnd {
		st.mu.Lock()
		delete(st.runs, run.key)
		st.finished.add(run.key)
		st.mu.Unlock()
	}
	return out, nil
}

// runFor finds the state of the event's trace, rebuilding it from the stream when the
// event does not start the trace. The events it gives back are what the rebuild found
// that was never handled: steps stored after this event.
func (st *Stage) runFor(ctx context.Context, in inEvent) (*traceRun, []event.Envelope, error) {
	key := in.Subject + " " + in.ref.Run
	st.mu.Lock()
	run := st.runs[key]
	ended := st.finished.has(key)
	st.mu.Unlock()
	if run != nil {
		return run, nil, nil
	}
	if in.Kind == event.KindStep && in.step.Seq == 0 {
		earlier, err := st.storedBefore(ctx, in)
		if err != nil {
			return nil, nil, fmt.Errorf("read trace %s: %w", in.Subject, err)
		}
		if !earlier {
			run = st.newRun(key, in.Subject)
			st.mu.Lock()
			st.runs[key] = run
			st.mu.Unlock()
			return run, nil, nil
		}
		// Later events of the trace were stored first and handled, maybe by an instance
		// that has stopped since: they are not delivered again, so the trace is rebuilt.
	}
	if ended {
		return nil, nil, nil // a late redelivery for a trace already finished
	}
	if st.read == nil || in.Seq == 0 {
		return nil, nil, &event.Permanent{Err: fmt.Errorf("%s event for a trace with no earlier steps", in.Kind)}
	}
	run, out, err := st.rebuild(ctx, in, key)
	if err != nil {
		return nil, nil, fmt.Errorf("rebuild trace %s: %w", in.Subject, err)
	}
	st.mu.Lock()
	st.runs[key] = run
	st.mu.Unlock()
	return run, out, nil
}

// rebuild replays one run of a trace from the whole subject. Steps are applied in their
// trace order, not the stream's: a sender that publishes asynchronously and retries
// after a failover can store a later step before an earlier one. Only steps before the
// event's own step are applied (it applies itself), and outputs stored before the event.
// Violations of steps stored before the event were emitted when they were handled; those
// of steps stored after it are returned, as they were not.
func (st *Stage) rebuild(ctx context.Context, in inEvent, key string) (*traceRun, []event.Envelope, error) {
	events, err := st.read(ctx, in.Subject, math.MaxUint64)
	if err != nil {
		return nil, nil, err
	}
	limit := math.MaxInt // a trace's first step is applied here with every step after it
	if in.Kind == event.KindStep && in.step.Seq > 0 {
		limit = in.step.Seq
	}
	steps := map[int]inEvent{}
	var outputs []inEvent
	for _, e := range events {
		ev, err := decodeEvent(e)
		if err != nil || ev.ref.Run != in.ref.Run {
			continue // the pipeline dead-lettered it, or another run of the trace
		}
		switch {
		case ev.Kind == event.KindStep && ev.step.Seq < limit:
			if _, dup := steps[ev.step.Seq]; !dup {
				steps[ev.step.Seq] = ev
			}
		case ev.Kind == event.KindOutput && ev.Seq < in.Seq:
			outputs = append(outputs, ev)
		}
	}
	run := st.newRun(key, in.Subject)
	var fresh []event.Envelope
	for i := 0; ; i++ {
		ev, ok := steps[i]
		if !ok {
			break
		}
		out, err := run.apply(ctx, st, ev)
		if err != nil {
			return nil, nil, err
		}
		if ev.Seq >= in.Seq { // the event itself, when it is the first step, or stored after it
			fresh = append(fresh, out...)
		}
	}
	if in.Kind == event.KindStep && limit < math.MaxInt && run.steps() < limit {
		return nil, nil, fmt.Errorf("step %d of trace %s: only %d steps before it are stored: events are missing", limit, in.ref.TraceID, run.steps())
	}
	for _, ev := range outputs {
		if run.s == nil {
			break
		}
		if _, ok := run.s.Index(ev.out.StepID); !ok {
			continue // of a step stored after it: it failed, and is delivered again
		}
		if _, err := run.apply(ctx, st, ev); err != nil {
			return nil, nil, err
		}
	}
	return run, fresh, nil
}

// storedBefore reports whether the stream holds events of the trace's run stored before
// the event: one request for each trace started, and a read when the answer is yes. Events of the trace's earlier runs
// (the same trace id sent again) do not count.
func (st *Stage) storedBefore(ctx context.Context, in inEvent) (bool, error) {
	if st.read == nil || in.Seq <= 1 {
		return false, nil
	}
	if st.first != nil {
		first, err := st.first(ctx, in.Subject)
		if err != nil {
			return false, err
		}
		if first == 0 || first >= in.Seq {
			return false, nil
		}
		// Something is stored before: the trace's run, or an earlier run of the same id.
	}
	events, err := st.read(ctx, in.Subject, in.Seq-1)
	if err != nil {
		return false, err
	}
	for _, e := range events {
		if ev, err := decodeEvent(e); err == nil && ev.ref.Run == in.ref.Run {
			return true, nil
		}
	}
	return false, nil
}

func (st *Stage) newRun(key, subject string) *traceRun {
	return &traceRun{key: key, subject: subject, emitted: map[string]bool{}, alerts: st.alerts}
}

// Forget drops the state of the traces whose steps subject matches: another instance
// handles their next events, so what this one knows of them may go stale. A trace
// forgotten is rebuilt from the stream if its events come back.
func (st *Stage) Forget(match func(subject string) bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for k, run := range st.runs {
		if match(run.subject) {
			delete(st.runs, k)
		}
	}
}

func (st *Stage) drop(key string) {
	st.mu.Lock()
	delete(st.runs, key)
	st.mu.Unlock()
}

// inEvent is a decoded event of the steps stream.
type inEvent struct {
	event.Envelope
	ref  event.TraceRef
	step *event.Step
	out  *event.Output
	end  *event.End
}

// decodeEvent decodes an event once, for routing and applying.
func decodeEvent(in event.Envelope) (inEvent, error) {
	ev := inEvent{Envelope: in}
	switch in.Kind {
	case event.KindStep:
		step, err := event.Decode[event.Step](in)
		if err != nil {
			return ev, err
		}
		ev.step, ev.ref = &step, step.TraceRef
	case event.KindOutput:
		out, err := event.Decode[event.Output](in)
		if err != nil {
			return ev, err
		}
		ev.out, ev.ref = &out, out.TraceRef
	case event.KindEnd:
		end, err := event.Decode[event.End](in)
		if err != nil {
			return ev, err
		}
		ev.end, ev.ref = &end, end.TraceRef
	default:
		return ev, &event.Permanent{Err: fmt.Errorf("unknown event kind %q", in.Kind)}
	}
	// Ids that break the rules (whoever published them) would break subjects and paths.
	if err := ev.ref.Check(); err != nil {
		return ev, &event.Permanent{Err: fmt.Errorf("%s event: %w", in.Kind, err)}
	}
	// An event names its trace twice, in its subject and its body: the two must agree, or
	// what the stage publishes for the trace would go where its events did not come from.
	if want := event.StepsSubject(ev.ref.AgentName, ev.ref.TraceID); in.Subject != want {
		return ev, &event.Permanent{Err: fmt.Errorf("%s event on subject %s names trace %q of agent %q, whose subject is %s", in.Kind, in.Subject, ev.ref.TraceID, ev.ref.AgentName, want)}
	}
	var stepID string
	switch {
	case ev.step != nil && ev.step.Step != nil:
		stepID = ev.step.Step.StepID
	case ev.out != nil:
		stepID = ev.out.StepID
	}
	if err := schemas.CheckID(stepID); err != nil {
		return ev, &event.Permanent{Err: fmt.Errorf("%s event: step_id: %w", in.Kind, err)}
	}
	return ev, nil
}

func (run *traceRun) apply(ctx context.Context, st *Stage, in inEvent) ([]event.Envelope, error) {
	run.last = time.Now()
	if in.Kind == event.KindStep {
		return run.step(ctx, st, *in.step) // idempotent by the step's position
	}
	if in.Kind == event.KindOutput {
		return run.output(*in.out) // idempotent: the same output again changes nothing
	}
	// An end is applied once: the trace is then forgotten, and marked finished.
	if in.end != nil && in.end.Steps > run.steps() {
		return nil, fmt.Errorf("end of trace %s after %d of its %d steps: events are missing", in.ref.TraceID, run.steps(), in.end.Steps)
	}
	return run.end(ctx, st.judge, st.verdict)
}

func (run *traceRun) step(ctx context.Context, st *Stage, ev event.Step) ([]event.Envelope, error) {
	if ev.Step == nil {
		return nil, &event.Permanent{Err: errors.New("step event without a step")}
	}
	if run.s == nil {
		c, err := st.policy(ctx, ev.Policy)
		if err != nil {
			return nil, fmt.Errorf("policy %q: %w", ev.Policy, err)
		}
		run.ref = ev.TraceRef
		run.ref.Policy = c.Hash()
		meta := ev.TraceMetadata
		if meta == nil {
			meta = map[string]any{}
		}
		run.s = c.NewSession(evaluator.SessionOptions{
			Trace:     &evaluator.TraceInfo{TraceID: ev.TraceID, AgentName: ev.AgentName, Metadata: meta},
			Agent:     &evaluator.AgentInfo{Name: ev.AgentName, Metadata: meta},
			Lookahead: true,
		})
	}
	switch n := run.s.Len(); {
	case ev.Seq < n:
		return nil, nil // already applied
	case ev.Seq > n:
		return nil, fmt.Errorf("step %d of trace %s arrived after %d steps: events are missing", ev.Seq, ev.TraceID, n)
	}
	ev.Step.Normalize()
	return run.evaluateNow(run.s.Append(ev.Step))
}

func (run *traceRun) output(ev event.Output) ([]event.Envelope, error) {
	var j int
	ok := false
	if run.s != nil {
		j, ok = run.s.SetOutput(ev.StepID, ev.Output)
	}
	if !ok {
		// Not permanent: the step may be stored after its output, and come.
		return nil, fmt.Errorf("output for unknown step %q of trace %s", ev.StepID, run.ref.TraceID)
	}
	var out []event.Envelope
	for i := j; i < run.s.Len(); i++ {
		emitted, err := run.evaluateNow(i)
		if err != nil {
			return nil, err
		}
		out = append(out, emitted...)
	}
	return out, nil
}

// evaluateNow evaluates step i by the rules that read no later step and emits the
// violations not emitted before.
func (run *traceRun) evaluateNow(i int) ([]event.Envelope, error) {
	vs, _ := run.s.EvaluateNow(i)
	var out []event.Envelope
	for _, v := range vs {
		env, err := run.violationEvent(i, v)
		if err != nil {
			return nil, err
		}
		if env.Subject != "" {
			out = append(out, env)
		}
	}
	return out, nil
}

func (run *traceRun) violationEvent(i int, v schemas.Violation) (event.Envelope, error) {
	if !run.alerts {
		return event.Envelope{}, nil
	}
	key := strconv.Itoa(i) + "|" + v.RuleID // by position: step ids may repeat
	if run.emitted[key] {
		return event.Envelope{}, nil
	}
	run.emitted[key] = true
	return event.New(event.Violation{TraceRef: run.ref, StepIndex: i, Violation: v})
}

// end evaluates the rules that look ahead over the whole trace, has j judge the cases of
// judge rules, emits their violations, then the verdict in step then rule order, as
// post-hoc evaluation finds it, and the trace's risk score.
func (run *traceRun) end(ctx context.Context, j evaluator.Judge, heard VerdictFunc) ([]event.Envelope, error) {
	if run.s == nil {
		return nil, &event.Permanent{Err: errors.New("end of a trace with no steps")}
	}
	v, err := run.s.FinishJudged(ctx, j)
	if err != nil {
		return nil, err
	}
	var out []event.Envelope
	for k, found := range v.Violations {
		env, err := run.violationEvent(v.Steps[k], found)
		if err != nil {
			return nil, err
		}
		if env.Subject != "" {
			out = append(out, env)
		}
	}
	ev, parts, err := event.Verdict(run.ref, run.s.Len(), v.Violations, v.RuleErrors)
	if err != nil {
		return nil, err
	}
	out = append(out, parts...)
	// The count comes after its parts, so a reader that sees it finds them stored.
	done, err := event.New(ev)
	if err != nil {
		return nil, err
	}
	scored, err := event.New(event.Scored{Evaluated: ev, RiskScore: scorer.ScoreRules(ev.Rules, run.s.Compiled().Weights())})
	if err != nil {
		return nil, err
	}
	if heard != nil {
		heard(v.Violations, v.RuleErrors)
	}
	return append(out, done, scored), nil
}

// Idle returns a event.End event for every trace without an event for longer than timeout,
// to be published on the trace's subject so that every stage sees the trace end.
func (st *Stage) Idle(timeout time.Duration) []event.Envelope {
	st.mu.Lock()
	runs := make([]*traceRun, 0, len(st.runs))
	for _, r := range st.runs {
		runs = append(runs, r)
	}
	st.mu.Unlock()
	cutoff := time.Now().Add(-timeout)
	var out []event.Envelope
	for _, run := range runs {
		run.mu.Lock()
		if run.last.Before(cutoff) && run.s != nil {
			env, err := event.New(event.End{TraceRef: run.ref, Steps: run.s.Len(), Reason: event.EndIdle})
			if err == nil {
				out = append(out, env)
			}
			run.last = time.Now() // not again before the end arrives
		}
		run.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subject < out[j].Subject })
	return out
}

// recent remembers the last n keys added.
type recent struct {
	n     int
	order *list.List
	at    map[string]*list.Element
}

func newRecent(n int) *recent {
	return &recent{n: n, order: list.New(), at: map[string]*list.Element{}}
}

func (r *recent) add(k string) {
	if e, ok := r.at[k]; ok {
		r.order.MoveToBack(e)
		return
	}
	r.at[k] = r.order.PushBack(k)
	if r.order.Len() > r.n {
		old := r.order.Remove(r.order.Front()).(string)
		delete(r.at, old)
	}
}

func (r *recent) has(k string) bool { _, ok := r.at[k]; return ok }
