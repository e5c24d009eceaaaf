package warehouse

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	json "github.com/goccy/go-json"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// Rows are gathered column by column: inserting whole columns is several times faster
// than appending row by row.

type stepRows struct {
	agent, trace, run       []string
	seq                     []uint32
	stepID, typ, tool, desc []string
	input, output           []string
	metaKeys, metaValues    [][]string
	parent                  []string
	ts                      []time.Time
	agentVersion, env, pol  []string
	version                 []uint64
}

func (r *stepRows) addEvent(e event.Envelope, cache *traceCache) error {
	var ev stepEvent
	if err := pyjson.Unmarshal(e.Data, &ev); err != nil {
		return err
	}
	if ev.Step == nil {
		return fmt.Errorf("step event without a step")
	}
	if r.add(&ev, e.Time, e.Seq) {
		cache.add(&ev, stepTime(ev.Step.Timestamp, e.Time))
	}
	return nil
}

// add adds a step's row; it reports false for a step the evaluator refuses too.
func (r *stepRows) add(ev *stepEvent, stored time.Time, version uint64) bool {
	s := ev.Step
	if !schemas.ValidStepType(s.Type) || ev.Seq < 0 {
		return false
	}
	r.agent = append(r.agent, ev.AgentName)
	r.trace = append(r.trace, ev.TraceID)
	r.run = append(r.run, ev.Run)
	r.seq = append(r.seq, uint32(ev.Seq))
	r.stepID = append(r.stepID, s.StepID)
	r.typ = append(r.typ, s.Type)
	r.tool = append(r.tool, ToolName(s.Type, s.Description, s.Metadata))
	r.desc = append(r.desc, s.Description)
	r.input = append(r.input, jsonText(s.Input))
	r.output = append(r.output, jsonText(s.Output))
	k, v := keyValues(s.Metadata)
	r.metaKeys = append(r.metaKeys, k)
	r.metaValues = append(r.metaValues, v)
	r.parent = append(r.parent, orEmpty(s.ParentStepID))
	r.ts = append(r.ts, stepTime(s.Timestamp, stored))
	r.agentVersion = append(r.agentVersion, AgentVersion(ev.TraceMetadata))
	r.env = append(r.env, Environment(ev.TraceMetadata))
	r.pol = append(r.pol, ev.Policy)
	r.version = append(r.version, version)
	return true
}

func (r *stepRows) columns() columns {
	var c columns
	c.add("agent", r.agent)
	c.add("trace_id", r.trace)
	c.add("run", r.run)
	c.add("seq", r.seq)
	c.add("step_id", r.stepID)
	c.add("type", r.typ)
	c.add("tool", r.tool)
	c.add("description", r.desc)
	c.add("input", r.input)
	c.add("output", r.output)
	c.add("metadata.key", r.metaKeys)
	c.add("metadata.value", r.metaValues)
	c.add("parent_step_id", r.parent)
	c.add("ts", r.ts)
	c.add("agent_version", r.agentVersion)
	c.add("environment", r.env)
	c.add("policy", r.pol)
	c.add("version", r.version)
	return c
}

type explanationRows struct {
	agent, trace, run                   []string
	index                               []uint32
	stepID, summary, rationale          []string
	alternatives, riskFactors, accessed [][]string
	errs                                []string
	at                                  []time.Time
	version                             []uint64
}

func (r *explanationRows) addEvent(e event.Envelope) error {
	var ev event.Explanation
	if err := json.Unmarshal(e.Data, &ev); err != nil {
		return err
	}
	x := ev.Explanation
	r.agent = append(r.agent, ev.AgentName)
	r.trace = append(r.trace, ev.TraceID)
	r.run = append(r.run, ev.Run)
	r.index = append(r.index, uint32(max(ev.StepIndex, 0)))
	r.stepID = append(r.stepID, x.StepID)
	r.summary = append(r.summary, x.Summary)
	r.rationale = append(r.rationale, x.Rationale)
	r.alternatives = append(r.alternatives, nonNil(x.Alternatives))
	r.riskFactors = append(r.riskFactors, nonNil(x.RiskFactors))
	r.accessed = append(r.accessed, nonNil(x.DataAccessed))
	r.errs = append(r.errs, x.Error)
	r.at = append(r.at, stepTime(nil, e.Time))
	r.version = append(r.version, e.Seq)
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (r *explanationRows) columns() columns {
	var c columns
	c.add("agent", r.agent)
	c.add("trace_id", r.trace)
	c.add("run", r.run)
	c.add("step_index", r.index)
	c.add("step_id", r.stepID)
	c.add("summary", r.summary)
	c.add("rationale", r.rationale)
	c.add("alternatives", r.alternatives)
	c.add("risk_factors", r.riskFactors)
	c.add("data_accessed", r.accessed)
	c.add("error", r.errs)
	c.add("explained_at", r.at)
	c.add("version", r.version)
	return c
}

type traceRows struct {
	agent, trace, run, agentVersion, env, policyID, policy []string
	risk                                                   []uint8
	steps, toolCalls, violations                           []uint32
	critical, high, medium, low, ruleErrors                []uint32
	firstAt, lastAt                                        []time.Time
	explanations, model                                    []string
	calls, cached                                          []uint32
	tokens                                                 []uint64
	summary                                                []string
	metaKeys, metaValues                                   [][]string
	finishedAt                                             []time.Time
	version                                                []uint64
}

func (r *traceRows) columns() columns {
	var c columns
	c.add("agent", r.agent)
	c.add("trace_id", r.trace)
	c.add("run", r.run)
	c.add("agent_version", r.agentVersion)
	c.add("environment", r.env)
	c.add("policy_id", r.policyID)
	c.add("policy", r.policy)
	c.add("risk_score", r.risk)
	c.add("steps", r.steps)
	c.add("tool_calls", r.toolCalls)
	c.add("violations", r.violations)
	c.add("critical", r.critical)
	c.add("high", r.high)
	c.add("medium", r.medium)
	c.add("low", r.low)
	c.add("rule_errors", r.ruleErrors)
	c.add("first_step_at", r.firstAt)
	c.add("last_step_at", r.lastAt)
	c.add("explanations", r.explanations)
	c.add("llm_model", r.model)
	c.add("llm_calls", r.calls)
	c.add("llm_cached", r.cached)
	c.add("llm_tokens", r.tokens)
	c.add("summary", r.summary)
	c.add("metadata.key", r.metaKeys)
	c.add("metadata.value", r.metaValues)
	c.add("finished_at", r.finishedAt)
	c.add("version", r.version)
	return c
}

type violationRows struct {
	agent, trace, run         []string
	index                     []uint32
	stepID, rule, severity    []string
	weight                    []uint16
	description, details      []string
	ts                        []time.Time
	agentVersion, env, policy []string
	version                   []uint64
}

func (r *violationRows) columns() columns {
	var c columns
	c.add("agent", r.agent)
	c.add("trace_id", r.trace)
	c.add("run", r.run)
	c.add("step_index", r.index)
	c.add("step_id", r.stepID)
	c.add("rule_id", r.rule)
	c.add("severity", r.severity)
	c.add("weight", r.weight)
	c.add("rule_description", r.description)
	c.add("details", r.details)
	c.add("ts", r.ts)
	c.add("agent_version", r.agentVersion)
	c.add("environment", r.env)
	c.add("policy", r.policy)
	c.add("version", r.version)
	return c
}

type ruleRows struct {
	policy, policyID, rule, severity, description []string
	weight                                        []uint16
	firstSeen                                     []time.Time
	version                                       []uint64
	policies                                      []schemas.PolicyRules
}

func (r *ruleRows) columns() columns {
	var c columns
	c.add("policy", r.policy)
	c.add("policy_id", r.policyID)
	c.add("rule_id", r.rule)
	c.add("severity", r.severity)
	c.add("weight", r.weight)
	c.add("description", r.description)
	c.add("first_seen", r.firstSeen)
	c.add("version", r.version)
	return c
}

func validSeverity(s string) bool {
	return slices.Contains(schemas.Severities(), s)
}

// traceInfo is what a finished trace's steps say about it.
type traceInfo struct {
	meta            map[string]any
	steps, tools    int
	firstAt, lastAt time.Time
	index           map[string]int // step id → position
	at              []time.Time    // by position
}

// stepSummary is the part of a step event that a trace's row needs.
type stepSummary struct {
	event.TraceRef
	TraceMetadata json.RawMessage `json:"trace_metadata"`
	Seq           int             `json:"seq"`
	Step          *struct {
		StepID    string  `json:"step_id"`
		Type      string  `json:"type"`
		Timestamp *string `json:"timestamp"`
	} `json:"step"`
}

// readTrace gathers one run of a trace from its steps, as the steps table has them.
func (k *Sink) readTrace(ctx context.Context, ref event.TraceRef) (*traceInfo, error) {
	events, err := k.read(ctx, event.StepsSubject(ref.AgentName, ref.TraceID), math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("read steps of trace %s: %w", ref.TraceID, err)
	}
	// Steps in their trace order, which the stream's may not be (see event.AssembleTrace).
	type found struct {
		ev stepSummary
		at time.Time
	}
	byPos := map[int]*found{}
	for _, e := range events {
		if e.Kind != event.KindStep {
			continue
		}
		var ev stepSummary // only what the trace's row needs: decoding is most of the cost
		if pyjson.Unmarshal(e.Data, &ev) != nil || ev.Run != ref.Run || ev.Step == nil || byPos[ev.Seq] != nil {
			continue // another run, or a duplicate
		}
		byPos[ev.Seq] = &found{ev, stepTime(ev.Step.Timestamp, e.Time)}
	}
	ti := &traceInfo{index: map[string]int{}}
	for f := byPos[0]; f != nil; f = byPos[ti.steps] {
		if ti.steps == 0 && len(f.ev.TraceMetadata) > 0 {
			_ = pyjson.Unmarshal(f.ev.TraceMetadata, &ti.meta)
		}
		ti.addStep(f.ev.Step.StepID, f.ev.Step.Type, f.at)
	}
	return ti, nil
}

// addStep adds the next step of the trace.
func (ti *traceInfo) addStep(id, typ string, at time.Time) {
	if ti.steps == 0 {
		ti.firstAt, ti.lastAt = at, at
	}
	ti.firstAt, ti.lastAt = minTime(ti.firstAt, at), maxTime(ti.lastAt, at)
	if _, dup := ti.index[id]; !dup {
		ti.index[id] = ti.steps
	}
	ti.at = append(ti.at, at)
	if typ == schemas.StepToolCall {
		ti.tools++
	}
	ti.steps++
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// readConcurrency bounds the traces read back at once while a batch is prepared.
const readConcurrency = 16

// finished is an event of a finished trace that the sink makes rows of: an end (scored,
// explained) or a part of its verdict.
type finished struct {
	e     event.Envelope
	ref   event.TraceRef
	steps int
	end   *event.Explained
	part  *event.VerdictPart
}

func decodeFinished(e event.Envelope) (finished, error) {
	f := finished{e: e}
	if e.Kind == event.KindVerdict {
		f.part = &event.VerdictPart{}
		if err := json.Unmarshal(e.Data, f.part); err != nil {
			return f, err
		}
		f.ref, f.steps = f.part.TraceRef, f.part.Steps
		return f, nil
	}
	f.end = &event.Explained{}
	if err := json.Unmarshal(e.Data, f.end); err != nil {
		return f, err
	}
	f.ref, f.steps = f.end.TraceRef, f.end.Steps
	return f, nil
}

// traces turns the events of finished traces into trace, violation and rule rows.
func (k *Sink) traces(ctx context.Context, events []event.Envelope) (traceRows, violationRows, ruleRows, error) {
	var (
		tr    traceRows
		vr    violationRows
		rr    ruleRows
		fs    = make([]finished, 0, len(events))
		infos = make([]*traceInfo, len(events))
		errs  = make([]error, len(events))
		wg    sync.WaitGroup
		sem   = make(chan struct{}, readConcurrency)
	)
	for _, e := range events {
		f, err := decodeFinished(e)
		if err != nil {
			k.skip(e, err)
			continue
		}
		fs = append(fs, f)
	}
	for i, f := range fs {
		if ti, ok := k.cache.get(f.ref, f.steps); ok {
			infos[i] = ti
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			infos[i], errs[i] = k.readTrace(ctx, f.ref)
			if errs[i] == nil && !k.complete(f.ref, infos[i].steps >= f.steps) {
				// A replica that has not caught up answered: the batch is tried again.
				errs[i] = fmt.Errorf("read steps of trace %s: %d of its %d steps read so far", f.ref.TraceID, infos[i].steps, f.steps)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return tr, vr, rr, err
		}
	}
	newPolicies := map[string]bool{}
	for i, f := range fs {
		ti := infos[i]
		pol := k.policyInfo(ctx, f.ref.Policy)
		if ti.steps == 0 {
			ti.firstAt = stepTime(nil, f.e.Time)
			ti.lastAt = ti.firstAt
		}
		if f.part != nil {
			vr.add(f.part, ti, pol, f.e.Seq)
			continue
		}
		if pol.Hash != "" && !k.known(pol.Hash) && !newPolicies[pol.Hash] {
			newPolicies[pol.Hash] = true
			rr.add(pol, f.e)
		}
		k.addTrace(&tr, f.end, ti, pol, f.e)
	}
	return tr, vr, rr, nil
}

// add adds the rows of a part of a trace's verdict.
func (r *violationRows) add(p *event.VerdictPart, ti *traceInfo, pol schemas.PolicyRules, version uint64) {
	weights := make(map[string]int, len(pol.Rules))
	for _, rule := range pol.Rules {
		weights[rule.ID] = rule.Weight
	}
	for _, v := range p.Violations {
		if !validSeverity(v.Severity) {
			continue
		}
		idx, ok := ti.index[v.StepID]
		at := ti.firstAt
		if ok {
			at = ti.at[idx]
		}
		r.agent = append(r.agent, p.AgentName)
		r.trace = append(r.trace, p.TraceID)
		r.run = append(r.run, p.Run)
		r.index = append(r.index, uint32(idx))
		r.stepID = append(r.stepID, v.StepID)
		r.rule = append(r.rule, v.RuleID)
		r.severity = append(r.severity, v.Severity)
		r.weight = append(r.weight, uint16(min(max(weights[v.RuleID], 0), math.MaxUint16)))
		r.description = append(r.description, v.RuleDescription)
		r.details = append(r.details, v.Details)
		r.ts = append(r.ts, at)
		r.agentVersion = append(r.agentVersion, AgentVersion(ti.meta))
		r.env = append(r.env, Environment(ti.meta))
		r.policy = append(r.policy, p.Policy)
		r.version = append(r.version, version)
	}
}

func (k *Sink) addTrace(tr *traceRows, ev *event.Explained, ti *traceInfo, pol schemas.PolicyRules, e event.Envelope) {
	sev := ev.BySeverity
	tr.agent = append(tr.agent, ev.AgentName)
	tr.trace = append(tr.trace, ev.TraceID)
	tr.run = append(tr.run, ev.Run)
	tr.agentVersion = append(tr.agentVersion, AgentVersion(ti.meta))
	tr.env = append(tr.env, Environment(ti.meta))
	tr.policyID = append(tr.policyID, pol.ID)
	tr.policy = append(tr.policy, ev.Policy)
	tr.risk = append(tr.risk, uint8(min(max(ev.RiskScore, 0), 100)))
	tr.steps = append(tr.steps, uint32(max(ti.steps, ev.Steps)))
	tr.toolCalls = append(tr.toolCalls, uint32(ti.tools))
	tr.violations = append(tr.violations, uint32(ev.Violations))
	tr.critical = append(tr.critical, uint32(sev[schemas.SeverityCritical]))
	tr.high = append(tr.high, uint32(sev[schemas.SeverityHigh]))
	tr.medium = append(tr.medium, uint32(sev[schemas.SeverityMedium]))
	tr.low = append(tr.low, uint32(sev[schemas.SeverityLow]))
	tr.ruleErrors = append(tr.ruleErrors, uint32(len(ev.RuleErrors)))
	tr.firstAt = append(tr.firstAt, ti.firstAt)
	tr.lastAt = append(tr.lastAt, ti.lastAt)
	var (
		model          string
		calls, cached  uint32
		tokens         uint64
		summary, state = "", ev.State
	)
	if ev.LLM != nil {
		model, calls, cached = ev.LLM.Model, uint32(ev.LLM.Calls), uint32(ev.LLM.Cached)
		tokens = uint64(ev.LLM.PromptTokens + ev.LLM.CompletionTokens)
	}
	if ev.Summary != nil {
		summary = ev.Summary.Overview
	}
	tr.explanations = append(tr.explanations, state)
	tr.model = append(tr.model, model)
	tr.calls = append(tr.calls, calls)
	tr.cached = append(tr.cached, cached)
	tr.tokens = append(tr.tokens, tokens)
	tr.summary = append(tr.summary, summary)
	keys, vals := keyValues(ti.meta)
	tr.metaKeys = append(tr.metaKeys, keys)
	tr.metaValues = append(tr.metaValues, vals)
	tr.finishedAt = append(tr.finishedAt, stepTime(nil, e.Time))
	tr.version = append(tr.version, e.Seq)
}

func (r *ruleRows) add(p schemas.PolicyRules, e event.Envelope) {
	for _, rule := range p.Rules {
		if !validSeverity(rule.Severity) {
			continue
		}
		r.policy = append(r.policy, p.Hash)
		r.policyID = append(r.policyID, p.ID)
		r.rule = append(r.rule, rule.ID)
		r.severity = append(r.severity, rule.Severity)
		r.weight = append(r.weight, uint16(min(max(rule.Weight, 0), math.MaxUint16)))
		r.description = append(r.description, rule.Description)
		r.firstSeen = append(r.firstSeen, stepTime(nil, e.Time))
		r.version = append(r.version, e.Seq)
	}
	r.policies = append(r.policies, p)
}

// policyInfo looks a revision up once; a revision that cannot be found gives rows
// without weights rather than holding the batch back.
func (k *Sink) policyInfo(ctx context.Context, hash string) schemas.PolicyRules {
	if hash == "" || k.policy == nil {
		return schemas.PolicyRules{}
	}
	k.mu.Lock()
	p, ok := k.policies[hash]
	missed, wasMissing := k.missing[hash]
	k.mu.Unlock()
	if ok || wasMissing && time.Since(missed) < time.Minute {
		return p // asked again a minute later, in case the store was only unreachable
	}
	p, err := k.policy(ctx, hash)
	if err != nil {
		k.log.Warn("policy revision not found; its violations are stored without weights", "policy", hash, "err", err)
		k.mu.Lock()
		k.missing[hash] = time.Now()
		k.mu.Unlock()
		return schemas.PolicyRules{}
	}
	p.Hash = hash
	return p
}

// known reports whether a revision's rules are stored already.
func (k *Sink) known(hash string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.policies[hash]
	return ok
}

// incompleteFor is how long a trace read back short of its steps holds its batch; after
// that its rows are written with the steps there are (the others are gone from the
// stream), rather than stopping the sink.
const incompleteFor = time.Minute

// complete says whether to take a trace read back: yes when it has all its steps, and also
// when it has been short of them for incompleteFor.
func (k *Sink) complete(ref event.TraceRef, whole bool) bool {
	key := cacheKey(ref.AgentName, ref.TraceID, ref.Run)
	k.mu.Lock()
	defer k.mu.Unlock()
	first, waiting := k.incomplete[key]
	switch {
	case whole:
		delete(k.incomplete, key)
		return true
	case !waiting:
		k.incomplete[key] = time.Now()
		return false
	case time.Since(first) < incompleteFor:
		return false
	}
	delete(k.incomplete, key)
	k.log.Warn("trace stored without the steps the stream no longer has", "trace", ref.TraceID, "run", ref.Run)
	return true
}
