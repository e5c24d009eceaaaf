package schemas

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json" // every event is encoded once and decoded by several stages

	"github.com/troy-audit/troy/schemas/pyjson"
)

// Event kinds. Each event travels with its kind in the Troy-Kind header.
const (
	KindStep        = "step"        // StepEvent: a step of a trace
	KindOutput      = "output"      // StepOutput: a step's output, recorded after the step ran
	KindEnd         = "end"         // TraceEnd: the trace is complete
	KindViolation   = "violation"   // ViolationEvent: a rule violated at a step, as soon as known
	KindVerdict     = "verdict"     // VerdictPart: a bounded part of a finished trace's violations
	KindEvaluated   = "evaluated"   // TraceEvaluated: a finished trace's verdict, counted
	KindScored      = "scored"      // TraceScored: a finished trace's risk score
	KindExplanation = "explanation" // ExplanationEvent: an LLM's explanation of one step
	KindExplained   = "explained"   // TraceExplained: a finished trace, scored and explained
	KindReported    = "reported"    // TraceReported: a finished trace's reports were written
	KindDead        = "dead"        // DeadLetter: an event no stage could handle
)

// TraceRef names a trace in events: its id, its agent, the policy revision (a content hash)
// its steps are evaluated with, and the run: an id of this sending of the trace, so that a
// trace sent again (an archive audited twice) is a new trace, not more of the old one.
type TraceRef struct {
	TraceID   string `json:"trace_id"`
	AgentName string `json:"agent_name"`
	Policy    string `json:"policy,omitempty"`
	Run       string `json:"run,omitempty"`
}

// Check says which id of the reference breaks the rules of CheckID, if any.
func (r TraceRef) Check() error {
	for _, f := range []struct{ name, id string }{{"trace_id", r.TraceID}, {"agent_name", r.AgentName}, {"policy", r.Policy}, {"run", r.Run}} {
		if err := CheckID(f.id); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// StepEvent is one step of a trace, in order: Seq is its 0-based position. The trace's
// metadata rides along with each step, so any step can start a trace.
type StepEvent struct {
	TraceRef
	TraceMetadata map[string]any `json:"trace_metadata,omitempty"`
	Seq           int            `json:"seq"`
	Step          *Step          `json:"step"`
}

// StepOutput attaches an output to a step already sent, as the guard records a tool's
// result after allowing the call.
type StepOutput struct {
	TraceRef
	StepID string         `json:"step_id"`
	Output map[string]any `json:"output"`
}

// TraceEnd marks a trace complete; Steps is how many steps it has.
type TraceEnd struct {
	TraceRef
	Steps int `json:"steps"`
	// Reason is "end" when the sender ended the trace, "idle" when it was closed after
	// a time without events.
	Reason string `json:"reason,omitempty"`
}

// ViolationEvent reports a violation the moment it is known: at the step's arrival for
// rules that read no later step, at the trace's end for the others. Subscribe to
// troy.results.violation.> for real-time alerts.
type ViolationEvent struct {
	TraceRef
	StepIndex int       `json:"step_index"`
	Violation Violation `json:"violation"`
}

// TraceEvaluated is the verdict of a finished trace, counted: how many violations it has,
// by severity and of which rules, and the rules that failed. The violations themselves, in
// step then rule order, are VerdictPart events on troy.results.verdict.<agent>.<trace>,
// Parts of them: no event grows with the trace, so no trace is too long for the pipeline.
type TraceEvaluated struct {
	TraceRef
	Steps      int `json:"steps"`
	Violations int `json:"violation_count"`
	Parts      int `json:"verdict_parts"`
	// Rules are the distinct rules violated, in policy order: all a score needs.
	Rules      []string       `json:"violated_rules,omitempty"`
	BySeverity map[string]int `json:"by_severity,omitempty"`
	RuleErrors []RuleError    `json:"rule_errors,omitempty"`
}

// VerdictPart holds violations of a finished trace's verdict, from position First on.
// Steps is the trace's length, so that a reader knows what to read back with it.
type VerdictPart struct {
	TraceRef
	Steps      int         `json:"steps"`
	Part       int         `json:"part"`
	First      int         `json:"first"`
	Violations []Violation `json:"violations"`
}

// MaxPartSize bounds the encoded size of a VerdictPart: well under the smallest payload
// limit a NATS server has by default (1 MiB), with room for headers.
const MaxPartSize = 256 << 10

// VerdictEvents cuts a verdict into VerdictPart events of at most MaxPartSize bytes (a
// part holds at least one violation), each violation encoded once, and returns them with
// the counted verdict, which is to be published after them.
func VerdictEvents(ref TraceRef, steps int, vs []Violation, errs []RuleError) (TraceEvaluated, []Envelope, error) {
	ev := TraceEvaluated{TraceRef: ref, Steps: steps, Violations: len(vs), RuleErrors: errs}
	var (
		parts []Envelope
		body  []byte // the violations of the part being filled, as a JSON array's elements
		first int
	)
	subject := ResultSubject(KindVerdict, ref.AgentName, ref.TraceID)
	flush := func(next int) error {
		e, err := NewEnvelope(subject, KindVerdict, MsgID(KindVerdict, ref, strconv.Itoa(len(parts))),
			rawVerdictPart{TraceRef: ref, Steps: steps, Part: len(parts), First: first, Violations: append(append([]byte{'['}, body...), ']')})
		if err != nil {
			return err
		}
		parts = append(parts, e)
		body, first = body[:0], next
		return nil
	}
	seen := map[string]bool{}
	for i, v := range vs {
		if !seen[v.RuleID] {
			seen[v.RuleID] = true
			ev.Rules = append(ev.Rules, v.RuleID)
		}
		if ev.BySeverity == nil {
			ev.BySeverity = map[string]int{}
		}
		ev.BySeverity[v.Severity]++
		b, err := json.Marshal(v)
		if err != nil {
			return ev, nil, fmt.Errorf("encode violation %d: %w", i, err)
		}
		if len(body) > 0 && len(body)+len(b)+1 > MaxPartSize-partOverhead(ref) {
			if err := flush(i); err != nil {
				return ev, nil, err
			}
		}
		if len(body) > 0 {
			body = append(body, ',')
		}
		body = append(body, b...)
	}
	if len(body) > 0 {
		if err := flush(len(vs)); err != nil {
			return ev, nil, err
		}
	}
	ev.Parts = len(parts)
	return ev, parts, nil
}

// rawVerdictPart is a VerdictPart with its violations encoded already.
type rawVerdictPart struct {
	TraceRef
	Steps      int             `json:"steps"`
	Part       int             `json:"part"`
	First      int             `json:"first"`
	Violations json.RawMessage `json:"violations"`
}

// partOverhead is the size of a VerdictPart without its violations.
func partOverhead(ref TraceRef) int {
	return len(ref.TraceID) + len(ref.AgentName) + len(ref.Policy) + len(ref.Run) + 160
}

// CollectVerdict gathers a finished trace's violations, in order, from its verdict
// subject's events on the results stream. A verdict read before all its parts are stored
// (a replica behind) is an error, to be tried again.
func CollectVerdict(events []Envelope, ev *TraceEvaluated) ([]Violation, error) {
	c := NewVerdictCollector(ev)
	for _, e := range events {
		if err := c.Add(e); err != nil {
			return nil, err
		}
	}
	return c.Violations()
}

// VerdictCollector gathers the parts of one run's verdict as they are read. Its counts
// come from an event anyone allowed to publish results could have written, so nothing is
// allocated by them: only by the parts actually read.
type VerdictCollector struct {
	ev    *TraceEvaluated
	parts map[int]*VerdictPart
}

// NewVerdictCollector starts gathering the verdict that ev counts.
func NewVerdictCollector(ev *TraceEvaluated) *VerdictCollector {
	return &VerdictCollector{ev: ev, parts: map[int]*VerdictPart{}}
}

// Add takes the next event of the trace's verdict subject.
func (c *VerdictCollector) Add(e Envelope) error {
	if e.Kind != KindVerdict {
		return nil
	}
	var p VerdictPart
	if err := json.Unmarshal(e.Data, &p); err != nil {
		return fmt.Errorf("verdict part %d: %w", e.Seq, err)
	}
	if p.Run != c.ev.Run || p.Part < 0 || p.Part >= c.ev.Parts || c.parts[p.Part] != nil {
		return nil // another run's, or a duplicate
	}
	c.parts[p.Part] = &p
	return nil
}

// Violations is the verdict, once every part is in.
func (c *VerdictCollector) Violations() ([]Violation, error) {
	ev := c.ev
	if ev.Parts < 0 || ev.Violations < 0 {
		return nil, fmt.Errorf("trace %s: a verdict of %d violations in %d parts", ev.TraceID, ev.Violations, ev.Parts)
	}
	if len(c.parts) < ev.Parts {
		return nil, fmt.Errorf("trace %s: %d of the %d parts of its verdict read so far: %w", ev.TraceID, len(c.parts), ev.Parts, ErrIncomplete)
	}
	var vs []Violation
	for i := range ev.Parts {
		p := c.parts[i]
		if p.First != len(vs) {
			return nil, fmt.Errorf("trace %s: verdict part %d starts at violation %d, want %d", ev.TraceID, p.Part, p.First, len(vs))
		}
		vs = append(vs, p.Violations...)
	}
	if len(vs) != ev.Violations {
		return nil, fmt.Errorf("trace %s: its verdict parts hold %d violations, want %d", ev.TraceID, len(vs), ev.Violations)
	}
	if vs == nil {
		vs = []Violation{}
	}
	return vs, nil
}

// TraceScored is a finished trace's risk score.
type TraceScored struct {
	TraceEvaluated
	RiskScore int `json:"risk_score"`
}

// ExplanationEvent is a model's explanation of one step of a finished trace.
type ExplanationEvent struct {
	TraceRef
	StepIndex   int             `json:"step_index"`
	Explanation StepExplanation `json:"explanation"`
}

// Explanation states, as AuditInfo.Explanations records them.
const (
	ExplanationsOn  = "on"
	ExplanationsOff = "off"
)

// TraceExplained is a scored trace with its explanations: State is ExplanationsOn when a
// model was asked (the step explanations are ExplanationEvents on
// troy.results.explanation.<agent>.<trace>, Steps of them), ExplanationsOff with the
// reason in Note otherwise.
type TraceExplained struct {
	TraceScored
	State   string        `json:"explanations"`
	Note    string        `json:"explanations_note,omitempty"`
	Count   int           `json:"explained_steps"`
	Summary *TraceSummary `json:"summary,omitempty"`
	LLM     *LLMUsage     `json:"llm,omitempty"`
}

// Audit assembles the audit of the trace from what the stages found: vs is its verdict,
// steps its step explanations, info describes the policy.
func (e *TraceExplained) Audit(t *Trace, vs []Violation, steps []StepExplanation, info AuditInfo) *AuditResult {
	info.Explanations, info.ExplanationsNote, info.RuleErrors, info.LLM = e.State, e.Note, e.RuleErrors, e.LLM
	r := &AuditResult{Trace: t, Explanations: steps, Summary: e.Summary, Violations: vs, RiskScore: e.RiskScore, Info: &info}
	r.Normalize()
	return r
}

// TraceReported says where a finished trace's reports were written.
type TraceReported struct {
	TraceRef
	RiskScore  int    `json:"risk_score"`
	Violations int    `json:"violations"`
	Report     string `json:"report"`
	AuditJSON  string `json:"audit_json"`
}

// DeadLetter is an event that could not be handled, with the reason. Trace names the
// trace the event belonged to, when it could be read, so that whoever waits for the trace
// learns at once that it will not finish.
type DeadLetter struct {
	Trace      *TraceRef `json:"trace,omitempty"`
	Stage      string    `json:"stage"`
	Subject    string    `json:"subject"`
	Kind       string    `json:"kind,omitempty"`
	Error      string    `json:"error"`
	Deliveries int       `json:"deliveries"`
	Data       []byte    `json:"data"`
	Truncated  bool      `json:"truncated,omitempty"` // Data is the start of a bigger event
}

// NewRun returns a fresh run id for a sending of a trace: unique without coordination.
func NewRun() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// Subjects. Every event of one trace shares one subject in the steps stream, so the stream
// keeps them in order and the end comes after every step.
const (
	StepsPrefix   = "troy.steps"
	ResultsPrefix = "troy.results"
	DeadPrefix    = "troy.dead"
)

// StepsSubject is the subject of a trace's step, output and end events.
func StepsSubject(agent, trace string) string {
	return StepsPrefix + "." + SubjectToken(agent) + "." + SubjectToken(trace)
}

// ResultSubject is the subject of a result event of a trace.
func ResultSubject(kind, agent, trace string) string {
	return ResultsPrefix + "." + kind + "." + SubjectToken(agent) + "." + SubjectToken(trace)
}

// DeadSubject is where a stage's dead letters go.
func DeadSubject(stage string) string { return DeadPrefix + "." + stage }

// MsgID identifies an event for de-duplication: a publish retried with the same id is
// stored once. part names the event within its trace (a step id, a rule at a step).
func MsgID(kind string, ref TraceRef, part string) string {
	return kind + "|" + SubjectToken(ref.Run) + "|" + SubjectToken(ref.TraceID) + "|" + SubjectToken(part)
}

// SubjectToken encodes an id as one subject token, reversibly: letters, digits, '-' and
// '_' stay, every other byte becomes ~ and two hex digits, and the empty id is "~".
func SubjectToken(id string) string {
	if id == "" {
		return "~"
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789abcdef"
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// ParseSubjectToken reverses SubjectToken.
func ParseSubjectToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '~' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("subject token %q: truncated escape at byte %d", tok, i)
		}
		v, err := strconv.ParseUint(tok[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("subject token %q: bad escape at byte %d", tok, i)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// Envelope is an event as the pipeline carries it: where it goes, what it is, and its
// JSON body. Stages take envelopes in and give envelopes out; only the bus knows how they
// travel.
type Envelope struct {
	Subject string
	Kind    string
	MsgID   string // de-duplication id; empty for none
	Data    []byte
	// Seq is the stream sequence of an event read from a stream; 0 otherwise.
	Seq uint64
	// Time is when the stream stored the event; zero for an event not read from a stream.
	Time time.Time
}

// NewEnvelope encodes an event. Steps and outputs hold an agent's values, written as
// Python's json writes them (pyjson), so that 5.0, 10**30 and infinity arrive as they were.
func NewEnvelope(subject, kind, msgID string, event any) (Envelope, error) {
	var data []byte
	var err error
	switch event.(type) {
	case StepEvent, *StepEvent, StepOutput, *StepOutput:
		data, err = pyjson.Marshal(event)
	default:
		data, err = json.Marshal(event)
	}
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s event: %w", kind, err)
	}
	return Envelope{Subject: subject, Kind: kind, MsgID: msgID, Data: data}, nil
}

// TraceStore reads back what the streams hold of one run of a trace. Stages that need a
// whole trace, its verdict or its explanations after the fact use it; the bus implements
// it. Each read that finds less than the caller knows was stored (a replica of a cluster
// behind) is an error, to be tried again rather than taken for the whole.
type TraceStore interface {
	// Trace reads the run's steps, outputs attached; it must find at least steps of them.
	Trace(ctx context.Context, ref TraceRef, steps int) (*Trace, error)
	// Verdict reads the violations of a finished run that ev counts.
	Verdict(ctx context.Context, ev *TraceEvaluated) ([]Violation, error)
	// Explanations reads the run's step explanations; it must find at least n.
	Explanations(ctx context.Context, ref TraceRef, n int) ([]StepExplanation, error)
}

// NewStepEvent encodes the step at position seq of a run of a trace. Its de-duplication id
// is its position, not its step id: a trace may repeat a step id, and a retried send of the
// same position is still stored once.
func NewStepEvent(ref TraceRef, traceMetadata map[string]any, seq int, s *Step) (Envelope, error) {
	return NewEnvelope(StepsSubject(ref.AgentName, ref.TraceID), KindStep, MsgID(KindStep, ref, strconv.Itoa(seq)),
		StepEvent{TraceRef: ref, TraceMetadata: traceMetadata, Seq: seq, Step: s})
}

// DecodeEvent decodes an event's body into v. Steps and outputs hold an agent's values,
// read as Python's json reads them (pyjson): a Python agent's NaN or Infinity, or an
// integer of 30 digits, arrives as it was sent.
func DecodeEvent(data []byte, v any) error {
	switch v.(type) {
	case *StepEvent, *StepOutput:
		return pyjson.Unmarshal(data, v)
	}
	return json.Unmarshal(data, v)
}

// AssembleTrace rebuilds one run of a trace from its subject's events on the steps
// stream: steps in their trace order (the stream may hold a later step before an earlier
// one when a sender retried after a failover), up to the first missing one; outputs
// attached in stream order; the end ignored.
func AssembleTrace(events []Envelope, run string) (*Trace, error) {
	a := NewAssembler(run)
	for _, e := range events {
		if err := a.Add(e); err != nil {
			return nil, err
		}
	}
	return a.Trace()
}

// Assembler rebuilds one run of a trace from its events as they are read, so that a long
// trace is decoded as it comes and its raw events need not be held at once.
type Assembler struct {
	run     string
	byPos   map[int]*StepEvent
	outputs []StepOutput
}

// NewAssembler starts assembling the given run.
func NewAssembler(run string) *Assembler {
	return &Assembler{run: run, byPos: map[int]*StepEvent{}}
}

// Add takes the next event of the trace's subject.
func (a *Assembler) Add(e Envelope) error {
	switch e.Kind {
	case KindStep:
		var ev StepEvent
		if err := DecodeEvent(e.Data, &ev); err != nil {
			return fmt.Errorf("step event %d: %w", e.Seq, err)
		}
		if ev.Run != a.run || ev.Step == nil || a.byPos[ev.Seq] != nil {
			return nil // another run, or a duplicate
		}
		a.byPos[ev.Seq] = &ev
	case KindOutput:
		var ev StepOutput
		if err := DecodeEvent(e.Data, &ev); err != nil {
			return fmt.Errorf("output event %d: %w", e.Seq, err)
		}
		if ev.Run == a.run {
			a.outputs = append(a.outputs, ev)
		}
	}
	return nil
}

// Trace is the trace assembled from the events added.
func (a *Assembler) Trace() (*Trace, error) {
	t := &Trace{}
	index := map[string]int{}
	for ev := a.byPos[0]; ev != nil; ev = a.byPos[len(t.Steps)] {
		if len(t.Steps) == 0 {
			t.TraceID, t.AgentName, t.Metadata = ev.TraceID, ev.AgentName, ev.TraceMetadata
		}
		index[ev.Step.StepID] = len(t.Steps)
		t.Steps = append(t.Steps, ev.Step)
	}
	for _, ev := range a.outputs {
		if i, ok := index[ev.StepID]; ok {
			s := *t.Steps[i]
			s.Output = ev.Output
			t.Steps[i] = &s
		}
	}
	if len(t.Steps) == 0 {
		return nil, fmt.Errorf("no steps")
	}
	t.Normalize()
	return t, nil
}

// CheckComplete says whether a trace read back has every step a result counted: a read
// can be answered by a replica of a cluster that has not caught up yet, and is then tried
// again rather than taken for the whole trace.
func CheckComplete(t *Trace, steps int) error {
	if len(t.Steps) < steps {
		return fmt.Errorf("trace %s: %d of its %d steps read so far: %w", t.TraceID, len(t.Steps), steps, ErrIncomplete)
	}
	return nil
}

// ErrIncomplete says a read found less than is known to be stored: a replica behind, to
// be read again.
var ErrIncomplete = errors.New("not all stored yet")

// CollectExplanations picks one run's step explanations out of its subject's events on
// the results stream, in step order, once each.
func CollectExplanations(events []Envelope, run string) []StepExplanation {
	byIndex := map[int]StepExplanation{}
	for _, e := range events {
		if e.Kind != KindExplanation {
			continue
		}
		var ev ExplanationEvent
		if json.Unmarshal(e.Data, &ev) != nil || ev.Run != run {
			continue
		}
		byIndex[ev.StepIndex] = ev.Explanation
	}
	out := make([]StepExplanation, 0, len(byIndex))
	for _, i := range slices.Sorted(maps.Keys(byIndex)) {
		out = append(out, byIndex[i])
	}
	return out
}

// Permanent marks an error that no retry can fix, such as an event that does not decode;
// the pipeline sends such events to the dead-letter subject at once instead of retrying.
type Permanent struct{ Err error }

func (p *Permanent) Error() string { return p.Err.Error() }
func (p *Permanent) Unwrap() error { return p.Err }
