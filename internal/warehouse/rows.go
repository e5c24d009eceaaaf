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

// The rows of each table, one field a column; plan turns them into columns.

// traceKey is the trace a row belongs to: the first columns of the tables of traces.
type traceKey struct {
	agent string `ch:"agent"`
	trace string `ch:"trace_id"`
	run   string `ch:"run"`
}

func keyOf(r event.TraceRef) traceKey { return traceKey{r.AgentName, r.TraceID, r.Run} }

// metadata is a metadata map as a Nested column: its keys sorted, and their values.
type metadata struct {
	keys   []string `ch:"metadata.key"`
	values []string `ch:"metadata.value"`
}

type stepRow struct {
	traceKey
	seq    uint32 `ch:"seq"`
	stepID string `ch:"step_id"`
	typ    string `ch:"type"`
	tool   string `ch:"tool"`
	desc   string `ch:"description"`
	input  string `ch:"input"`
	output string `ch:"output"`
	metadata
	parent       string    `ch:"parent_step_id"`
	ts           time.Time `ch:"ts"`
	agentVersion string    `ch:"agent_version"`
	env          string    `ch:"environment"`
	policy       string    `ch:"policy"`
	version      uint64    `ch:"version"`
}

type explanationRow struct {
	traceKey
	index        uint32    `ch:"step_index"`
	stepID       string    `ch:"step_id"`
	summary      string    `ch:"summary"`
	rationale    string    `ch:"rationale"`
	alternatives []string  `ch:"alternatives"`
	riskFactors  []string  `ch:"risk_factors"`
	accessed     []string  `ch:"data_accessed"`
	err          string    `ch:"error"`
	at           time.Time `ch:"explained_at"`
	version      uint64    `ch:"version"`
}

type traceRow struct {
	traceKey
	agentVersion string    `ch:"agent_version"`
	env          string    `ch:"environment"`
	policyID     string    `ch:"policy_id"`
	policy       string    `ch:"policy"`
	risk         uint8     `ch:"risk_score"`
	steps        uint32    `ch:"steps"`
	toolCalls    uint32    `ch:"tool_calls"`
	violations   uint32    `ch:"violations"`
	critical     uint32    `ch:"critical"`
	high         uint32    `ch:"high"`
	medium       uint32    `ch:"medium"`
	low          uint32    `ch:"low"`
	ruleErrors   uint32    `ch:"rule_errors"`
	firstAt      time.Time `ch:"first_step_at"`
	lastAt       time.Time `ch:"last_step_at"`
	explanations string    `ch:"explanations"`
	model        string    `ch:"llm_model"`
	calls        uint32    `ch:"llm_calls"`
	cached       uint32    `ch:"llm_cached"`
	tokens       uint64    `ch:"llm_tokens"`
	summary      string    `ch:"summary"`
	metadata
	finishedAt time.Time `ch:"finished_at"`
	version    uint64    `ch:"version"`
}

type violationRow struct {
	traceKey
	index        uint32    `ch:"step_index"`
	stepID       string    `ch:"step_id"`
	rule         string    `ch:"rule_id"`
	severity     string    `ch:"severity"`
	weight       uint16    `ch:"weight"`
	description  string    `ch:"rule_description"`
	details      string    `ch:"details"`
	ts           time.Time `ch:"ts"`
	agentVersion string    `ch:"agent_version"`
	env          string    `ch:"environment"`
	policy       string    `ch:"policy"`
	version      uint64    `ch:"version"`
}

type ruleRow struct {
	policy      string    `ch:"policy"`
	policyID    string    `ch:"policy_id"`
	rule        string    `ch:"rule_id"`
	severity    string    `ch:"severity"`
	weight      uint16    `ch:"weight"`
	description string    `ch:"description"`
	firstSeen   time.Time `ch:"first_seen"`
	version     uint64    `ch:"version"`
}

// The plans of the tables' rows, made once: they never change.
var (
	stepColumns        = mustPlan[stepRow]()
	explanationColumns = mustPlan[explanationRow]()
	traceColumns       = mustPlan[traceRow]()
	violationColumns   = mustPlan[violationRow]()
	ruleColumns        = mustPlan[ruleRow]()
)

// tables holds the rows a batch of events makes, by table.
type tables struct {
	steps        []stepRow
	explanations []explanationRow
	traces       []traceRow
	violations   []violationRow
	rules        []ruleRow
	policies     []schemas.PolicyRules // the revisions whose rules are among the rows
}

// insert is one table's rows, ready to be inserted.
type insert struct {
	table   string
	n       int
	columns func() columns
}

func insertOf[R any](table string, p *plan[R], rows []R) insert {
	return insert{table, len(rows), func() columns { return p.columns(rows) }}
}

// inserts are the tables' rows in the order they are inserted.
func (t *tables) inserts() []insert {
	return []insert{
		insertOf("steps", stepColumns, t.steps),
		insertOf("traces", traceColumns, t.traces),
		insertOf("violations", violationColumns, t.violations),
		insertOf("explanations", explanationColumns, t.explanations),
		insertOf("rules", ruleColumns, t.rules),
	}
}

func (t *tables) addStepEvent(e event.Envelope, cache *traceCache) error {
	var ev stepEvent
	if err := pyjson.Unmarshal(e.Data, &ev); err != nil {
		return err
	}
	if ev.Step == nil {
		return fmt.Errorf("step event without a step")
	}
	if t.addStep(&ev, e.Time, e.Seq) {
		cache.add(&ev, stepTime(ev.Step.Timestamp, e.Time))
	}
	return nil
}

// addStep adds a step's row; it reports false for a step the evaluator refuses too.
func (t *tables) addStep(ev *stepEvent, stored time.Time, version uint64) bool {
	s := ev.Step
	if !schemas.ValidStepType(s.Type) || ev.Seq < 0 {
		return false
	}
	t.steps = append(t.steps, stepRow{
		traceKey:     keyOf(ev.TraceRef),
		seq:          uint32(ev.Seq),
		stepID:       s.StepID,
		typ:          s.Type,
		tool:         ToolName(s.Type, s.Description, s.Metadata),
		desc:         s.Description,
		input:        jsonText(s.Input),
		output:       jsonText(s.Output),
		metadata:     metadataOf(s.Metadata),
		parent:       orEmpty(s.ParentStepID),
		ts:           stepTime(s.Timestamp, stored),
		agentVersion: AgentVersion(ev.TraceMetadata),
		env:          Environment(ev.TraceMetadata),
		policy:       ev.Policy,
		version:      version,
	})
	return true
}

func (t *tables) addExplanationEvent(e event.Envelope) error {
	ev, err := event.Decode[event.Explanation](e)
	if err != nil {
		return err
	}
	x := ev.Explanation
	t.explanations = append(t.explanations, explanationRow{
		traceKey:     keyOf(ev.TraceRef),
		index:        uint32(max(ev.StepIndex, 0)),
		stepID:       x.StepID,
		summary:      x.Summary,
		rationale:    x.Rationale,
		alternatives: nonNil(x.Alternatives),
		riskFactors:  nonNil(x.RiskFactors),
		accessed:     nonNil(x.DataAccessed),
		err:          x.Error,
		at:           stepTime(nil, e.Time),
		version:      e.Seq,
	})
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
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

// stepSummary is the part of a step event that a trace's row needs. Reading a trace back
// decodes only that: with the sink's stepEvent, the metadata of every step would be
// decoded too, and a batch of finished traces read back would cost 55% more
// (BenchmarkSinkRows, readback).
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
		var ev stepSummary
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
		part, err := event.Decode[event.VerdictPart](e)
		if err != nil {
			return f, err
		}
		f.part, f.ref, f.steps = &part, part.TraceRef, part.Steps
		return f, nil
	}
	// A scored event is an explained one without its explanations: one struct reads both.
	f.end = &event.Explained{}
	if err := json.Unmarshal(e.Data, f.end); err != nil {
		return f, err
	}
	f.ref, f.steps = f.end.TraceRef, f.end.Steps
	return f, nil
}

// addTraces turns the events of finished traces into trace, violation and rule rows.
func (k *Sink) addTraces(ctx context.Context, t *tables, events []event.Envelope) error {
	var (
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
			return err
		}
	}
	ends := 0
	for _, f := range fs {
		if f.end != nil {
			ends++
		}
	}
	t.traces = slices.Grow(t.traces, ends)
	newPolicies := map[string]bool{}
	for i, f := range fs {
		ti := infos[i]
		pol := k.policyInfo(ctx, f.ref.Policy)
		if ti.steps == 0 {
			ti.firstAt = stepTime(nil, f.e.Time)
			ti.lastAt = ti.firstAt
		}
		if f.part != nil {
			t.addViolations(f.part, ti, pol, f.e.Seq)
			continue
		}
		if pol.Hash != "" && !k.known(pol.Hash) && !newPolicies[pol.Hash] {
			newPolicies[pol.Hash] = true
			t.addRules(pol, f.e)
		}
		t.addTrace(f.end, ti, pol, f.e)
	}
	return nil
}

// addViolations adds the rows of a part of a trace's verdict.
func (t *tables) addViolations(p *event.VerdictPart, ti *traceInfo, pol schemas.PolicyRules, version uint64) {
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
		t.violations = append(t.violations, violationRow{
			traceKey:     keyOf(p.TraceRef),
			index:        uint32(idx),
			stepID:       v.StepID,
			rule:         v.RuleID,
			severity:     v.Severity,
			weight:       uint16(min(max(weights[v.RuleID], 0), math.MaxUint16)),
			description:  v.RuleDescription,
			details:      v.Details,
			ts:           at,
			agentVersion: AgentVersion(ti.meta),
			env:          Environment(ti.meta),
			policy:       p.Policy,
			version:      version,
		})
	}
}

func (t *tables) addTrace(ev *event.Explained, ti *traceInfo, pol schemas.PolicyRules, e event.Envelope) {
	sev := ev.BySeverity
	r := traceRow{
		traceKey:     keyOf(ev.TraceRef),
		agentVersion: AgentVersion(ti.meta),
		env:          Environment(ti.meta),
		policyID:     pol.ID,
		policy:       ev.Policy,
		risk:         uint8(min(max(ev.RiskScore, 0), 100)),
		steps:        uint32(max(ti.steps, ev.Steps)),
		toolCalls:    uint32(ti.tools),
		violations:   uint32(ev.Violations),
		critical:     uint32(sev[schemas.SeverityCritical]),
		high:         uint32(sev[schemas.SeverityHigh]),
		medium:       uint32(sev[schemas.SeverityMedium]),
		low:          uint32(sev[schemas.SeverityLow]),
		ruleErrors:   uint32(len(ev.RuleErrors)),
		firstAt:      ti.firstAt,
		lastAt:       ti.lastAt,
		explanations: ev.State,
		metadata:     metadataOf(ti.meta),
		finishedAt:   stepTime(nil, e.Time),
		version:      e.Seq,
	}
	if ev.LLM != nil {
		r.model, r.calls, r.cached = ev.LLM.Model, uint32(ev.LLM.Calls), uint32(ev.LLM.Cached)
		r.tokens = uint64(ev.LLM.PromptTokens + ev.LLM.CompletionTokens)
	}
	if ev.Summary != nil {
		r.summary = ev.Summary.Overview
	}
	t.traces = append(t.traces, r)
}

// addRules adds the rows of a policy revision's rules.
func (t *tables) addRules(p schemas.PolicyRules, e event.Envelope) {
	for _, rule := range p.Rules {
		if !validSeverity(rule.Severity) {
			continue
		}
		t.rules = append(t.rules, ruleRow{
			policy:      p.Hash,
			policyID:    p.ID,
			rule:        rule.ID,
			severity:    rule.Severity,
			weight:      uint16(min(max(rule.Weight, 0), math.MaxUint16)),
			description: rule.Description,
			firstSeen:   stepTime(nil, e.Time),
			version:     e.Seq,
		})
	}
	t.policies = append(t.policies, p)
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
