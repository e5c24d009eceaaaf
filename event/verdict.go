package event

import (
	"fmt"
	"strconv"

	json "github.com/goccy/go-json"

	"github.com/troy-audit/troy/schemas"
)

// MaxPartSize bounds the encoded size of a VerdictPart: well under the smallest payload
// limit a NATS server has by default (1 MiB), with room for headers.
const MaxPartSize = 256 << 10

// Verdict cuts a verdict into VerdictPart events of at most MaxPartSize bytes (a
// part holds at least one violation), each violation encoded once, and returns them with
// the counted verdict, which is to be published after them.
func Verdict(ref TraceRef, steps int, vs []schemas.Violation, errs []schemas.RuleError) (Evaluated, []Envelope, error) {
	ev := Evaluated{TraceRef: ref, Steps: steps, Violations: len(vs), RuleErrors: errs}
	var (
		parts []Envelope
		body  []byte // the violations of the part being filled, as a JSON array's elements
		first int
	)
	flush := func(next int) error {
		e, err := New(rawVerdictPart{TraceRef: ref, Steps: steps, Part: len(parts), First: first, Violations: append(append([]byte{'['}, body...), ']')})
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

func (VerdictPart) kind() Kind        { return KindVerdict }
func (e VerdictPart) subject() string { return e.resultSubject(KindVerdict) }
func (e VerdictPart) msgID() string   { return MsgID(KindVerdict, e.TraceRef, strconv.Itoa(e.Part)) }

// rawVerdictPart is a VerdictPart with its violations encoded already.
type rawVerdictPart struct {
	TraceRef
	Steps      int             `json:"steps"`
	Part       int             `json:"part"`
	First      int             `json:"first"`
	Violations json.RawMessage `json:"violations"`
}

func (rawVerdictPart) kind() Kind        { return KindVerdict }
func (e rawVerdictPart) subject() string { return e.resultSubject(KindVerdict) }
func (e rawVerdictPart) msgID() string   { return MsgID(KindVerdict, e.TraceRef, strconv.Itoa(e.Part)) }

// partOverhead is the size of a VerdictPart without its violations.
func partOverhead(ref TraceRef) int {
	return len(ref.TraceID) + len(ref.AgentName) + len(ref.Policy) + len(ref.Run) + 160
}

// CollectVerdict gathers a finished trace's violations, in order, from its verdict
// subject's events on the results stream. A verdict read before all its parts are stored
// (a replica behind) is an error, to be tried again.
func CollectVerdict(events []Envelope, ev *Evaluated) ([]schemas.Violation, error) {
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
	ev    *Evaluated
	parts map[int]*VerdictPart
}

// NewVerdictCollector starts gathering the verdict that ev counts.
func NewVerdictCollector(ev *Evaluated) *VerdictCollector {
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
func (c *VerdictCollector) Violations() ([]schemas.Violation, error) {
	ev := c.ev
	if ev.Parts < 0 || ev.Violations < 0 {
		return nil, fmt.Errorf("trace %s: a verdict of %d violations in %d parts", ev.TraceID, ev.Violations, ev.Parts)
	}
	if len(c.parts) < ev.Parts {
		return nil, fmt.Errorf("trace %s: %d of the %d parts of its verdict read so far: %w", ev.TraceID, len(c.parts), ev.Parts, ErrIncomplete)
	}
	var vs []schemas.Violation
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
		vs = []schemas.Violation{}
	}
	return vs, nil
}
