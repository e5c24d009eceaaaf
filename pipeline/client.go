package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/troy-audit/troy/bus"
	"github.com/troy-audit/troy/schemas"
)

// Client sends whole traces into the pipeline and waits for their results (scored and
// explained), as `troyctl audit` and `troyctl batch` do.
type Client struct {
	b      *bus.Bus
	policy string
	prefix string
	n      atomic.Int64
	purge  bool

	mu       sync.Mutex
	waiting  map[string]chan schemas.TraceExplained // by run
	inFlight map[string]int                         // runs in flight, by subject
	stop     context.CancelFunc
	done     <-chan error
}

// NewClient starts listening for results. Traces are evaluated with the policy of the given
// hash. With purge, a trace's events are removed from the streams once it is done, for
// one-shot runs that keep streams in memory.
func NewClient(ctx context.Context, b *bus.Bus, policy string, purge bool) (*Client, error) {
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	c := &Client{b: b, policy: policy, prefix: hex.EncodeToString(id[:]), purge: purge, waiting: map[string]chan schemas.TraceExplained{}, inFlight: map[string]int{}}
	ctx, c.stop = context.WithCancel(ctx)
	ready, done := b.Subscribe(ctx, bus.ResultsStream, schemas.ResultsPrefix+"."+schemas.KindExplained+".>", c.deliver)
	<-ready
	c.done = done
	select {
	case err := <-done:
		c.stop()
		if err != nil {
			return nil, err
		}
		return nil, ctx.Err()
	default:
	}
	return c, nil
}

// Close stops listening.
func (c *Client) Close() {
	c.stop()
	<-c.done
}

func (c *Client) deliver(e schemas.Envelope) {
	var ev schemas.TraceExplained
	if json.Unmarshal(e.Data, &ev) != nil {
		return
	}
	c.mu.Lock()
	ch := c.waiting[ev.Run]
	delete(c.waiting, ev.Run)
	c.mu.Unlock()
	if ch != nil {
		ch <- ev
	}
}

// Audit sends a trace (every step, then its end) and waits until it is scored and
// explained; it returns that result and the step explanations.
func (c *Client) Audit(ctx context.Context, t *schemas.Trace) (schemas.TraceExplained, []schemas.StepExplanation, error) {
	var none schemas.TraceExplained
	run := c.prefix + "-" + strconv.FormatInt(c.n.Add(1), 36)
	ref := schemas.TraceRef{TraceID: t.TraceID, AgentName: t.AgentName, Policy: c.policy, Run: run}
	subject := schemas.StepsSubject(t.AgentName, t.TraceID)
	ch := make(chan schemas.TraceExplained, 1)
	c.mu.Lock()
	c.waiting[run] = ch
	c.inFlight[subject]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, run)
		c.inFlight[subject]--
		last := c.inFlight[subject] == 0
		if last {
			delete(c.inFlight, subject)
		}
		c.mu.Unlock()
		// In memory, a finished trace's events are dropped, unless another sending of
		// the same trace still needs them. A failure costs memory, not results.
		if c.purge && last {
			ctx := context.WithoutCancel(ctx)
			_ = c.b.Purge(ctx, bus.StepsStream, subject)
			_ = c.b.Purge(ctx, bus.ResultsStream, schemas.ResultSubject("*", t.AgentName, t.TraceID))
		}
	}()
	events := make([]schemas.Envelope, 0, len(t.Steps)+1)
	for i, s := range t.Steps {
		e, err := schemas.NewEnvelope(subject, schemas.KindStep, schemas.MsgID(schemas.KindStep, ref, s.StepID),
			schemas.StepEvent{TraceRef: ref, TraceMetadata: t.Metadata, Seq: i, Step: s})
		if err != nil {
			return none, nil, err
		}
		if len(e.Data) > bus.MaxEventSize {
			return none, nil, fmt.Errorf("step %s is %d bytes encoded, over the %d-byte event limit", s.StepID, len(e.Data), bus.MaxEventSize)
		}
		events = append(events, e)
	}
	end, err := schemas.NewEnvelope(subject, schemas.KindEnd, schemas.MsgID(schemas.KindEnd, ref, ""), schemas.TraceEnd{TraceRef: ref, Steps: len(t.Steps)})
	if err != nil {
		return none, nil, err
	}
	if err := c.b.PublishAll(ctx, append(events, end)); err != nil {
		return none, nil, err
	}
	var ev schemas.TraceExplained
	select {
	case ev = <-ch:
	case <-ctx.Done():
		return none, nil, ctx.Err()
	}
	if ev.Count == 0 {
		return ev, nil, nil
	}
	stored, err := c.b.ReadResults(ctx, schemas.ResultSubject(schemas.KindExplanation, t.AgentName, t.TraceID), math.MaxUint64)
	if err != nil {
		return none, nil, fmt.Errorf("read explanations: %w", err)
	}
	steps := schemas.CollectExplanations(stored, run)
	if len(steps) < ev.Count {
		return none, nil, fmt.Errorf("read explanations: %d of %d found", len(steps), ev.Count)
	}
	return ev, steps, nil
}

// Auditor audits traces through the pipeline, assembling the same audit as the in-process
// engine from the pipeline's results.
type Auditor struct {
	Client *Client
	Info   schemas.AuditInfo // describes the client's policy
}

// Audit sends one trace and assembles its audit.
func (a *Auditor) Audit(ctx context.Context, t *schemas.Trace) (*schemas.AuditResult, error) {
	ev, steps, err := a.Client.Audit(ctx, t)
	if err != nil {
		return nil, err
	}
	return ev.Audit(t, steps, a.Info), nil
}
