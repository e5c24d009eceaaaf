package event

import (
	"fmt"
	"time"

	json "github.com/goccy/go-json" // every event is encoded once and decoded by several stages

	"github.com/troy-audit/troy/schemas/pyjson"
)

// Kind names what an event is. It travels in the KindHeader of each message.
type Kind string

// Event kinds.
const (
	KindStep        Kind = "step"        // Step: a step of a trace
	KindOutput      Kind = "output"      // Output: a step's output, recorded after the step ran
	KindEnd         Kind = "end"         // End: the trace is complete
	KindViolation   Kind = "violation"   // Violation: a rule violated at a step, as soon as known
	KindVerdict     Kind = "verdict"     // VerdictPart: a bounded part of a finished trace's violations
	KindEvaluated   Kind = "evaluated"   // Evaluated: a finished trace's verdict, counted
	KindScored      Kind = "scored"      // Scored: a finished trace's risk score
	KindExplanation Kind = "explanation" // Explanation: a model's explanation of one step
	KindExplained   Kind = "explained"   // Explained: a finished trace, scored and explained
	KindReported    Kind = "reported"    // Reported: a finished trace's reports were written
	KindDead        Kind = "dead"        // DeadLetter: an event no stage could handle
)

// KindHeader is the message header that carries an event's kind.
const KindHeader = "Troy-Kind"

// Envelope is an event as the pipeline carries it: where it goes, what it is, and its
// JSON body. Stages take envelopes in and give envelopes out; only the bus knows how they
// travel.
type Envelope struct {
	Subject string
	Kind    Kind
	MsgID   string // de-duplication id; empty for none
	Data    []byte
	// Seq is the stream sequence of an event read from a stream; 0 otherwise.
	Seq uint64
	// Time is when the stream stored the event; zero for an event not read from a stream.
	Time time.Time
}

// Payload is the body of an event. Only this package's event types are payloads: each
// fixes its kind, its subject and its de-duplication id.
type Payload interface {
	kind() Kind
	subject() string
	msgID() string
}

// New encodes an event into its envelope. Steps and outputs hold an agent's values,
// written as Python's json writes them (pyjson), so that 5.0, 10**30 and infinity arrive
// as they were sent.
func New(p Payload) (Envelope, error) {
	var data []byte
	var err error
	switch p.(type) {
	case Step, *Step, Output, *Output:
		data, err = pyjson.Marshal(p)
	default:
		data, err = json.Marshal(p)
	}
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s event: %w", p.kind(), err)
	}
	return Envelope{Subject: p.subject(), Kind: p.kind(), MsgID: p.msgID(), Data: data}, nil
}

// Decode reads an envelope's body as the payload type its kind names. An envelope of
// another kind, or a body that does not decode, is a Permanent error: no retry changes
// it. Steps and outputs are read as Python's json reads them (pyjson): a Python agent's
// NaN or Infinity, or an integer of 30 digits, arrives as it was sent.
func Decode[T any, P interface {
	*T
	Payload
}](e Envelope) (T, error) {
	var v T
	want := P(&v).kind()
	if e.Kind != want {
		return v, &Permanent{Err: fmt.Errorf("a %q event where a %q event was expected", e.Kind, want)}
	}
	if err := decodeData(e.Data, P(&v)); err != nil {
		return v, &Permanent{Err: fmt.Errorf("decode %s event: %w", want, err)}
	}
	return v, nil
}

// decodeData decodes an event's body into p.
func decodeData(data []byte, p Payload) error {
	switch p.(type) {
	case *Step, *Output:
		return pyjson.Unmarshal(data, p)
	}
	return json.Unmarshal(data, p)
}

// Permanent marks an error that no retry can fix, such as an event that does not decode;
// the pipeline sends such events to the dead-letter subject at once instead of retrying.
type Permanent struct{ Err error }

func (p *Permanent) Error() string { return p.Err.Error() }
func (p *Permanent) Unwrap() error { return p.Err }

// RefOf reads the trace reference an event of a trace carries, whatever its kind, without
// decoding the rest of it.
func RefOf(e Envelope) (TraceRef, error) {
	var ref TraceRef
	if err := json.Unmarshal(e.Data, &ref); err != nil {
		return ref, &Permanent{Err: fmt.Errorf("decode the trace of a %s event: %w", e.Kind, err)}
	}
	return ref, nil
}
