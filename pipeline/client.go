package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/bus"
	"github.com/troy-audit/troy/schemas"
)

// Client sends whole traces into the pipeline and waits for their scored results, as
// `troyctl audit` and `troyctl batch` do.
type Client struct {
	b      *bus.Bus
	policy string
	prefix string
	n      atomic.Int64
	purge  bool

	mu       sync.Mutex
	waiting  map[string]chan schemas.TraceScored // by run
	inFlight map[string]int                      // runs in flight, by subject
	stop     context.CancelFunc
	done     <-chan error
}

// NewClient starts listening for results. Traces are evaluated with the policy of the given
// hash. With purge, a trace's events are removed from the stream once it is scored, for
// one-shot runs that keep streams in memory.
func NewClient(ctx context.Context, b *bus.Bus, policy string, purge bool) (*Client, error) {
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	c := &Client{b: b, policy: policy, prefix: hex.EncodeToString(id[:]), purge: purge, waiting: map[string]chan schemas.TraceScored{}, inFlight: map[string]int{}}
	ctx, c.stop = context.WithCancel(ctx)
	ready, done := b.Subscribe(ctx, bus.ResultsStream, schemas.ResultsPrefix+"."+schemas.KindScored+".>", c.deliver)
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
	var ev schemas.TraceScored
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

// Audit sends a trace (every step, then its end) and waits for its scored result.
func (c *Client) Audit(ctx context.Context, t *schemas.Trace) (schemas.TraceScored, error) {
	run := c.prefix + "-" + strconv.FormatInt(c.n.Add(1), 36)
	ref := schemas.TraceRef{TraceID: t.TraceID, AgentName: t.AgentName, Policy: c.policy, Run: run}
	subject := schemas.StepsSubject(t.AgentName, t.TraceID)
	ch := make(chan schemas.TraceScored, 1)
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
		// the same trace still needs them.
		if c.purge && last {
			_ = c.b.Purge(context.WithoutCancel(ctx), bus.StepsStream, subject) // a failure costs memory, not results
		}
	}()
	events := make([]schemas.Envelope, 0, len(t.Steps)+1)
	for i, s := range t.Steps {
		e, err := schemas.NewEnvelope(subject, schemas.KindStep, schemas.MsgID(schemas.KindStep, ref, s.StepID),
			schemas.StepEvent{TraceRef: ref, TraceMetadata: t.Metadata, Seq: i, Step: s})
		if err != nil {
			return schemas.TraceScored{}, err
		}
		if len(e.Data) > bus.MaxEventSize {
			return schemas.TraceScored{}, fmt.Errorf("step %s is %d bytes encoded, over the %d-byte event limit", s.StepID, len(e.Data), bus.MaxEventSize)
		}
		events = append(events, e)
	}
	end, err := schemas.NewEnvelope(subject, schemas.KindEnd, schemas.MsgID(schemas.KindEnd, ref, ""), schemas.TraceEnd{TraceRef: ref, Steps: len(t.Steps)})
	if err != nil {
		return schemas.TraceScored{}, err
	}
	if err := c.b.PublishAll(ctx, append(events, end)); err != nil {
		return schemas.TraceScored{}, err
	}
	select {
	case ev := <-ch:
		return ev, nil
	case <-ctx.Done():
		return schemas.TraceScored{}, ctx.Err()
	}
}

// Auditor audits traces through the pipeline, assembling the same audit as the in-process
// engine from the scored result.
type Auditor struct {
	Client      *Client
	Info        schemas.AuditInfo // describes the client's policy
	ExplainNote string
}

// Audit sends one trace and assembles its audit.
func (a *Auditor) Audit(ctx context.Context, t *schemas.Trace) (*schemas.AuditResult, error) {
	ev, err := a.Client.Audit(ctx, t)
	if err != nil {
		return nil, err
	}
	return audit.Assemble(t, ev.Violations, ev.RuleErrors, ev.RiskScore, a.Info, a.ExplainNote), nil
}
