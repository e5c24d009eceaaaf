package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/troy-audit/troy/event"

	json "github.com/goccy/go-json"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// PolicyFunc looks up a policy revision by its content hash.
type PolicyFunc func(ctx context.Context, hash string) (schemas.PolicyRules, error)

// Sink writes pipeline events into the tables: steps as they arrive (and again when a
// step's output arrives), and at each trace's end the trace, its violations, and the rules
// of its policy; explanations as the explainer publishes them.
//
// Every row carries the stream sequence of the event it comes from as its version, and its
// key and partition come from the event alone, so writing a batch twice changes no query
// that reads with FINAL.
type Sink struct {
	s      *Store
	read   event.ReadFunc
	policy PolicyFunc
	log    *slog.Logger

	mu       sync.Mutex
	policies map[string]schemas.PolicyRules // revisions whose rules are stored
	missing  map[string]time.Time           // revisions the policy store lacked, and when
	cache    *traceCache
	// incomplete holds when traces were first read back short of their steps.
	incomplete map[string]time.Time
	// Skipped counts events that could not be turned into rows (they do not decode).
	Skipped int64
}

// NewSink prepares a sink writing to s. read gives the steps of a finished trace; policy
// gives a revision's rules.
func NewSink(s *Store, read event.ReadFunc, policy PolicyFunc, log *slog.Logger) *Sink {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sink{s: s, read: read, policy: policy, log: log, policies: map[string]schemas.PolicyRules{}, missing: map[string]time.Time{}, cache: newTraceCache(traceCacheSize), incomplete: map[string]time.Time{}}
}

// traceCacheSize bounds the traces whose steps the sink remembers.
const traceCacheSize = 100000

// Kinds are the event kinds the sink stores; others are ignored.
func Kinds() []event.Kind {
	return []event.Kind{event.KindStep, event.KindOutput, event.KindVerdict, event.KindScored, event.KindExplanation, event.KindExplained}
}

// Write stores a batch of events; it returns nil only once every row is committed.
func (k *Sink) Write(ctx context.Context, batch []event.Envelope) error {
	t, err := k.rows(ctx, batch)
	if err != nil {
		return err
	}
	// The tables are inserted into at once: on a server each insert costs a part per
	// partition, mostly files to create, so a batch takes as long as its largest table.
	inserts := t.inserts()
	errs := make([]error, len(inserts))
	var wg sync.WaitGroup
	for i, in := range inserts {
		if in.n == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = k.s.insert(ctx, in.table, in.columns())
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	k.mu.Lock()
	for _, p := range t.policies {
		k.policies[p.Hash] = p
	}
	k.mu.Unlock()
	return nil
}

// rows turns a batch of events into the rows of every table.
func (k *Sink) rows(ctx context.Context, batch []event.Envelope) (*tables, error) {
	var (
		t       tables
		outputs = map[string][]event.Envelope{} // by subject
		ends    []event.Envelope
		steps   int
	)
	for _, e := range batch {
		if e.Kind == event.KindStep || e.Kind == event.KindOutput {
			steps++
		}
	}
	t.steps = make([]stepRow, 0, steps) // most rows are steps': grown, they would be copied
	for _, e := range batch {
		switch e.Kind {
		case event.KindStep:
			if err := t.addStepEvent(e, k.cache); err != nil {
				k.skip(e, err)
			}
		case event.KindOutput:
			outputs[e.Subject] = append(outputs[e.Subject], e)
		case event.KindVerdict, event.KindScored, event.KindExplained:
			ends = append(ends, e)
		case event.KindExplanation:
			if err := t.addExplanationEvent(e); err != nil {
				k.skip(e, err)
			}
		}
	}
	if err := k.outputs(ctx, outputs, &t); err != nil {
		return nil, err
	}
	if err := k.addTraces(ctx, &t, ends); err != nil {
		return nil, err
	}
	return &t, nil
}

func (k *Sink) skip(e event.Envelope, err error) {
	k.mu.Lock()
	k.Skipped++
	k.mu.Unlock()
	k.log.Warn("event not stored: it does not decode", "subject", e.Subject, "seq", e.Seq, "err", err)
}

// outputs turns step outputs into new versions of their steps' rows, reading each
// subject's steps once.
func (k *Sink) outputs(ctx context.Context, bySubject map[string][]event.Envelope, t *tables) error {
	for subject, outs := range bySubject {
		var upTo uint64
		for _, o := range outs {
			upTo = max(upTo, o.Seq)
		}
		events, err := k.read(ctx, subject, upTo)
		if err != nil {
			return fmt.Errorf("read steps of %s: %w", subject, err)
		}
		for _, o := range outs {
			out, err := event.Decode[event.Output](o)
			if err != nil {
				k.skip(o, err)
				continue
			}
			raw, _ := pyjson.Marshal(out.Output)
			// The step's latest event before the output, of the same run.
			for i := len(events) - 1; i >= 0; i-- {
				e := events[i]
				if e.Kind != event.KindStep || e.Seq > o.Seq {
					continue
				}
				var ev stepEvent
				if pyjson.Unmarshal(e.Data, &ev) != nil || ev.Run != out.Run || ev.Step == nil || ev.Step.StepID != out.StepID {
					continue
				}
				ev.Step.Output = raw
				t.addStep(&ev, e.Time, o.Seq)
				break
			}
		}
	}
	return nil
}

// stepEvent is an event.Step whose step keeps its input and output as the JSON they came
// as: the sink stores them as text, and decoding them into maps only to write them back
// costs the sink 18% more time per batch of small steps, 44% with inputs of 2 KB
// (BenchmarkSinkRows).
type stepEvent struct {
	stepPayload
	Step *rawStep `json:"step"` // in place of event.Step's
}

// stepPayload is event.Step under a name that leaves the name Step to stepEvent's field.
type stepPayload = event.Step

type rawStep struct {
	schemas.Step
	Input  json.RawMessage `json:"input"`  // in place of Step.Input
	Output json.RawMessage `json:"output"` // in place of Step.Output
}

// stepTime is when a step happened: its own timestamp, else when the stream stored it.
// Both come from the event, so a row written twice lands in the same partition.
func stepTime(ts *string, stored time.Time) time.Time {
	if ts != nil {
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
			if t, err := time.Parse(layout, *ts); err == nil {
				if t.Year() >= 1971 && t.Year() <= 2105 { // DateTime's range
					return t.UTC()
				}
				break
			}
		}
	}
	if stored.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return stored.UTC()
}

// str renders a metadata value as text: strings as they are, anything else as JSON.
func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	b, _ := pyjson.Marshal(v)
	return string(b)
}

// metadataOf flattens a map into the parallel arrays of a Nested column, keys sorted.
func metadataOf(m map[string]any) metadata {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = str(m[k])
	}
	return metadata{keys, vals}
}

// first returns the first of keys present in m, as text.
func first(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if v, ok := m[k]; ok && v != nil {
			return str(v)
		}
	}
	return ""
}

// AgentVersion and Environment read a trace's metadata the way the tables record it.
func AgentVersion(meta map[string]any) string { return first(meta, "agent_version", "version") }
func Environment(meta map[string]any) string  { return first(meta, "environment", "env") }

// ToolName is the tool a tool_call step used: metadata's tool_name or tool, else the
// step's description, which names the tool in traces of the Python tool's format.
func ToolName(typ, description string, meta map[string]any) string {
	if typ != schemas.StepToolCall {
		return ""
	}
	if t := first(meta, "tool_name", "tool"); t != "" {
		return t
	}
	return description
}

func jsonText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "{}"
	}
	return string(raw)
}

func orEmpty(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
