package evaluator

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/scorer"
)

// GuardOptions configure a guard session.
type GuardOptions struct {
	// TraceID names the session's trace; conditions see it as trace.trace_id.
	TraceID string
	// AgentName and AgentMetadata are what conditions see as agent.name and
	// agent.metadata (and trace.agent_name and trace.metadata).
	AgentName     string
	AgentMetadata map[string]any
	// Mode is enforce (block violating steps), monitor (allow them, and call OnViolation)
	// or dry-run (allow them, only record). Empty means enforce.
	Mode string
	// OnViolation is called in monitor mode with the decision a step would have had in
	// enforce mode, when that would have been a block. It runs with the guard locked and
	// must not call the guard.
	OnViolation func(schemas.Decision)
	// OnRuleError says what enforce mode does with a step at which a rule could not be
	// evaluated: schemas.OnRuleErrorBlock (fail closed) or schemas.OnRuleErrorSkip. Empty
	// means the policy's setting (policies.OnRuleErrorKey), which defaults to block.
	OnRuleError string
	// Now stamps checked steps; nil means time.Now.
	Now func() time.Time
	// Judge gives the verdict of rules with a model judge at the steps where their
	// condition holds, within each rule's timeout; without an answer the rule's on_error
	// decides (block by default). Nil is a judge that never answers: the rule's on_error
	// decides at once.
	Judge Judge
	// Logger hears of judges that gave no answer where the rule allows the step anyway;
	// nil discards.
	Logger *slog.Logger
}

// Guard checks proposed steps one at a time, before they run. Each checked step is
// recorded (even when blocked) so later rules can look back at it, and the risk score
// accumulates over the session. Rules see no future steps: next_steps is always empty.
// A Guard is safe for concurrent use; checks are serialized.
type Guard struct {
	mu          sync.Mutex
	c           *Compiled
	opts        GuardOptions
	s           *Session
	risk        *scorer.Accumulator
	onViolation func(schemas.Decision)
	// Metadata keys the session's checked steps carried, and the (rule, key) pairs already
	// reported missing (by their position in the policy's list).
	seenKeys map[string]bool
	warned   map[int]bool
	// judged holds the judge's outcome of each case of the session, by step and rule.
	judged map[[2]int]judged
}

// CheckRequest is a proposed step: the step an agent sends in a guard check (its action
// becomes the step's description; its type, empty, means tool_call), with what a caller
// in the same process may add.
type CheckRequest struct {
	schemas.GuardStep
	StepID string // optional; default step-N
	// Timestamp, when set, is the step's time as the caller recorded it; empty means now.
	Timestamp string
	// AgentMetadata, when not nil, replaces the session's agent metadata (agent.metadata
	// and trace.metadata) for this check only.
	AgentMetadata map[string]any
}

// NewGuard starts a guard session.
func (c *Compiled) NewGuard(opts GuardOptions) (*Guard, error) {
	if opts.Mode == "" {
		opts.Mode = schemas.ModeEnforce
	}
	if !slices.Contains(schemas.Modes(), opts.Mode) {
		return nil, fmt.Errorf("invalid guard mode %q: must be one of %s", opts.Mode, strings.Join(schemas.Modes(), ", "))
	}
	if opts.AgentName == "" {
		opts.AgentName = "agent"
	}
	if opts.AgentMetadata == nil {
		opts.AgentMetadata = map[string]any{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnRuleError == "" {
		opts.OnRuleError = c.policy.OnRuleError()
	}
	if !slices.Contains(schemas.OnRuleErrors(), opts.OnRuleError) {
		return nil, fmt.Errorf("invalid rule error setting %q: must be one of %s", opts.OnRuleError, strings.Join(schemas.OnRuleErrors(), ", "))
	}
	g := &Guard{c: c, opts: opts, onViolation: opts.OnViolation}
	g.reset()
	return g, nil
}

func (g *Guard) reset() {
	g.s = g.c.NewSession(SessionOptions{
		Trace: &TraceInfo{TraceID: g.opts.TraceID, AgentName: g.opts.AgentName, Metadata: g.opts.AgentMetadata},
		Agent: &AgentInfo{Name: g.opts.AgentName, Metadata: g.opts.AgentMetadata},
	})
	g.risk = scorer.NewAccumulator(g.c.weights)
	g.judged = map[[2]int]judged{}
}

// Check evaluates a proposed step against the policy and records it. In enforce mode a
// step with violations is not allowed, nor one at which a rule could not be evaluated
// (unless OnRuleError is skip); in monitor and dry-run modes every step is allowed. The
// decision lists violations and rule errors in every mode.
//
// Check waits for a model judge without a context of its own (each rule's timeout bounds
// it); CheckContext takes one.
func (g *Guard) Check(req CheckRequest) (schemas.Decision, error) {
	return g.CheckContext(context.Background(), req)
}

// CheckContext is Check with a context, which bounds the wait for a model judge.
func (g *Guard) CheckContext(ctx context.Context, req CheckRequest) (schemas.Decision, error) {
	if req.Type == "" {
		req.Type = schemas.StepToolCall
	}
	if !schemas.ValidStepType(req.Type) {
		return schemas.Decision{}, fmt.Errorf("step type %q is not one of %s", req.Type, strings.Join(schemas.StepTypes(), ", "))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if req.AgentMetadata != nil && !reflect.DeepEqual(req.AgentMetadata, g.opts.AgentMetadata) {
		g.s.UseAgentMetadata(deepCopy(req.AgentMetadata))
		defer g.s.UseAgentMetadata(g.opts.AgentMetadata)
	}
	id := req.StepID
	if id == "" {
		id = fmt.Sprintf("step-%d", g.s.Len())
	}
	if _, dup := g.s.Index(id); dup {
		return schemas.Decision{}, fmt.Errorf("step_id %q was already checked in this session", id)
	}
	ts := req.Timestamp
	if ts == "" {
		ts = g.opts.Now().UTC().Format(time.RFC3339Nano)
	}
	found, errs, judgeErrs, judgeBlocks := g.add(ctx, &schemas.Step{
		StepID:      id,
		Type:        req.Type,
		Description: req.Action,
		Input:       deepCopy(req.Input),
		Output:      map[string]any{},
		Metadata:    deepCopy(req.Metadata),
		Timestamp:   &ts,
	})
	d := schemas.Decision{
		StepID:     id,
		Allowed:    len(found) == 0 && !judgeBlocks && (len(errs) == 0 || g.opts.OnRuleError == schemas.OnRuleErrorSkip),
		Violations: found,
		RiskScore:  g.risk.Score(),
		Mode:       g.opts.Mode,
		RuleErrors: append(errs, judgeErrs...),
	}
	if d.Violations == nil {
		d.Violations = []schemas.Violation{}
	}
	if d.RuleErrors == nil {
		d.RuleErrors = []schemas.StepRuleError{}
	}
	if !d.Allowed && g.opts.Mode != schemas.ModeEnforce {
		if g.opts.Mode == schemas.ModeMonitor && g.onViolation != nil {
			g.onViolation(d)
		}
		d.Allowed = true
	}
	return d, nil
}

// add records a step, evaluates it (asking the judge about the cases of judge rules) and
// adds its violations to the risk. judgeBlocks says a judge gave no answer where its rule
// fails closed; judgeErrs say which judges gave no answer (apart from errs, the rules
// that failed, which OnRuleError decides about).
func (g *Guard) add(ctx context.Context, step *schemas.Step) (found []schemas.Violation, errs, judgeErrs []schemas.StepRuleError, judgeBlocks bool) {
	i := g.s.Append(step)
	found, errs = g.s.EvaluateNow(i)
	judgedViolations := false
	for _, jc := range g.s.JudgeCases(i) {
		o := g.judge(ctx, jc)
		g.judged[[2]int{i, jc.rule}] = o
		r := g.c.rules[jc.rule]
		switch {
		case o.skipped():
		case o.err == nil && !o.v.Aligned:
			found = append(found, judgeViolation(r, step, o.v.Reason))
			judgedViolations = true
		case o.err != nil && jc.OnError == policies.JudgeOnErrorAllow:
			msg := oneLine("model judge gave no answer; allowed as the rule's on_error says: " + o.err.Error())
			g.opts.Logger.Warn("model judge gave no answer; step allowed (on_error: allow)", "rule", r.RuleID, "step", step.StepID, "err", o.err)
			judgeErrs = append(judgeErrs, schemas.StepRuleError{RuleID: r.RuleID, Error: msg})
		case o.err != nil:
			judgeBlocks = true
			judgeErrs = append(judgeErrs, schemas.StepRuleError{RuleID: r.RuleID, Error: oneLine("model judge unavailable, step blocked (on_error: block): " + o.err.Error())})
		}
	}
	// Violations are in rule order, as the session gives them.
	if judgedViolations {
		slices.SortStableFunc(found, func(a, b schemas.Violation) int { return cmp.Compare(g.ruleIndex(a.RuleID), g.ruleIndex(b.RuleID)) })
	}
	for _, v := range found {
		g.risk.Add(v.RuleID)
	}
	return found, errs, judgeErrs, judgeBlocks
}

// judge asks the guard's judge about a case within the rule's timeout.
func (g *Guard) judge(ctx context.Context, jc JudgeCase) judged {
	if g.opts.Judge == nil {
		return judged{c: jc, err: errNoJudge}
	}
	ctx, cancel := context.WithTimeout(ctx, jc.Timeout)
	defer cancel()
	v, err := g.opts.Judge.Judge(ctx, jc)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("no answer within %s: %w", jc.Timeout, err)
	}
	return judged{c: jc, v: v, err: err}
}

func (g *Guard) ruleIndex(id string) int {
	for _, r := range g.c.rules {
		if r.RuleID == id {
			return r.index
		}
	}
	return len(g.c.rules)
}

// verdict is the session's verdict with the judge's outcomes merged in.
func (g *Guard) verdict() Verdict {
	v, cases := g.s.finish()
	outs := make([]judged, len(cases))
	for k, jc := range cases {
		o, ok := g.judged[[2]int{jc.Step, jc.rule}]
		if !ok {
			o = judged{c: jc, err: errNoJudge}
		}
		outs[k] = o
	}
	v.Result, v.Steps = g.c.merge(v.Result, v.Steps, outs, g.s.steps)
	return v
}

// Replay records a step checked before, as it was stored (its id and time), and evaluates
// it again, so that a session continued elsewhere goes on as it was: later rules see it
// and its violations count in the risk. Its decision was given when it was checked.
func (g *Guard) Replay(step *schemas.Step) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.s.Index(step.StepID); dup {
		return fmt.Errorf("step_id %q was already checked in this session", step.StepID)
	}
	if !schemas.ValidStepType(step.Type) {
		return fmt.Errorf("step type %q is not one of %s", step.Type, strings.Join(schemas.StepTypes(), ", "))
	}
	s := *step
	s.Normalize()
	g.add(context.Background(), &s) // a judge is asked again within its rule's timeout
	return nil
}

// Len is the number of steps checked in the session.
func (g *Guard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.s.Len()
}

// Step returns the i-th step checked, as recorded.
func (g *Guard) Step(i int) *schemas.Step {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.s.Step(i)
}

// RecordOutput attaches a step's output after it ran, so later rules can read it.
func (g *Guard) RecordOutput(stepID string, output map[string]any) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.s.SetOutput(stepID, deepCopy(output)); !ok {
		return fmt.Errorf("unknown step_id %q", stepID)
	}
	return nil
}

// Trace returns the session so far as a trace, for a post-hoc audit.
func (g *Guard) Trace() *schemas.Trace {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := &schemas.Trace{
		TraceID:   g.opts.TraceID,
		AgentName: g.opts.AgentName,
		Steps:     g.s.Steps(),
		Metadata:  maps.Clone(g.opts.AgentMetadata),
	}
	t.Normalize()
	return t
}

// Violations returns every violation found in the session so far, in check order.
func (g *Guard) Violations() []schemas.Violation {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.verdict().Violations
}

// RuleErrors lists the rules whose condition failed during the session.
func (g *Guard) RuleErrors() []schemas.RuleError {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.verdict().RuleErrors
}

// Reset forgets the session: steps, violations and risk.
func (g *Guard) Reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reset()
}

// deepCopy copies decoded JSON so a caller changing its map later cannot change a
// recorded step.
func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = copyValue(v)
	}
	return out
}

func copyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return deepCopy(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyValue(e)
		}
		return out
	}
	return v
}

// MetadataKeys lists the keys of a step's metadata each rule reads (see Compiled).
func (g *Guard) MetadataKeys() []schemas.MissingMetadata { return g.c.MetadataKeys() }

// MissingMetadata notes the metadata keys of a checked step and returns the (rule, key)
// pairs that rules read and no checked step of the session has carried yet, each once per
// session: the hint an agent needs when its adapter passes no metadata.
func (g *Guard) MissingMetadata(meta map[string]any) []schemas.MissingMetadata {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.seenKeys == nil {
		g.seenKeys, g.warned = map[string]bool{}, map[int]bool{}
	}
	for k := range meta {
		g.seenKeys[k] = true
	}
	var out []schemas.MissingMetadata
	for i, m := range g.c.MetadataKeys() {
		if g.seenKeys[m.Key] || g.warned[i] {
			continue
		}
		g.warned[i] = true
		out = append(out, m)
	}
	return out
}
