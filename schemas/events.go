package schemas

import (
	"crypto/rand"
	"encoding/hex"
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
	KindEvaluated   = "evaluated"   // TraceEvaluated: every violation of a finished trace
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

// TraceEvaluated lists every violation of a finished trace, in step then rule order.
type TraceEvaluated struct {
	TraceRef
	Steps      int         `json:"steps"`
	Violations []Violation `json:"violations"`
	RuleErrors []RuleError `json:"rule_errors,omitempty"`
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

// Audit assembles the audit of the trace from what the stages found: steps are its step
// explanations, info describes the policy.
func (e *TraceExplained) Audit(t *Trace, steps []StepExplanation, info AuditInfo) *AuditResult {
	info.Explanations, info.ExplanationsNote, info.RuleErrors, info.LLM = e.State, e.Note, e.RuleErrors, e.LLM
	r := &AuditResult{Trace: t, Explanations: steps, Summary: e.Summary, Violations: e.Violations, RiskScore: e.RiskScore, Info: &info}
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

// DeadLetter is an event that could not be handled, with the reason.
type DeadLetter struct {
	Stage      string `json:"stage"`
	Subject    string `json:"subject"`
	Kind       string `json:"kind,omitempty"`
	Error      string `json:"error"`
	Deliveries int    `json:"deliveries"`
	Data       []byte `json:"data"`
	Truncated  bool   `json:"truncated,omitempty"` // Data is the start of a bigger event
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
	t := &Trace{}
	byPos := map[int]*StepEvent{}
	var outputs []StepOutput
	for _, e := range events {
		switch e.Kind {
		case KindStep:
			var ev StepEvent
			if err := DecodeEvent(e.Data, &ev); err != nil {
				return nil, fmt.Errorf("step event %d: %w", e.Seq, err)
			}
			if ev.Run != run || ev.Step == nil || byPos[ev.Seq] != nil {
				continue // another run, or a duplicate
			}
			byPos[ev.Seq] = &ev
		case KindOutput:
			var ev StepOutput
			if err := DecodeEvent(e.Data, &ev); err != nil {
				return nil, fmt.Errorf("output event %d: %w", e.Seq, err)
			}
			if ev.Run == run {
				outputs = append(outputs, ev)
			}
		}
	}
	index := map[string]int{}
	for ev := byPos[0]; ev != nil; ev = byPos[len(t.Steps)] {
		if len(t.Steps) == 0 {
			t.TraceID, t.AgentName, t.Metadata = ev.TraceID, ev.AgentName, ev.TraceMetadata
		}
		index[ev.Step.StepID] = len(t.Steps)
		t.Steps = append(t.Steps, ev.Step)
	}
	for _, ev := range outputs {
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
		return fmt.Errorf("trace %s: %d of its %d steps read so far", t.TraceID, len(t.Steps), steps)
	}
	return nil
}

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
