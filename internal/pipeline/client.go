package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/event"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/schemas"
)

// Client sends whole traces into the pipeline and waits for their results (scored and
// explained), as `troyctl audit` and `troyctl batch` do.
//
// No wait is open-ended: a trace whose event a stage gives up on (a dead letter) fails at
// once with the stage's reason, and a trace still unfinished when the stages it waits for
// have had nothing to do for a while fails with how far it got. A deadline on ctx bounds
// the rest.
type Client struct {
	b      *bus.Bus
	policy string
	prefix string
	n      atomic.Int64
	opts   ClientOptions

	mu       sync.Mutex
	waiting  map[string]*waiter // by run
	inFlight map[string]int     // runs in flight, by subject
	stop     context.CancelFunc
	done     chan error
}

// waiter is an Audit waiting for its trace's result.
type waiter struct {
	ref  event.TraceRef
	out  chan outcome // buffered: the first outcome wins
	sent atomic.Bool  // every event of the trace is stored
}

type outcome struct {
	ev  event.Explained
	err error
}

func (w *waiter) finish(o outcome) {
	select {
	case w.out <- o:
	default:
	}
}

// DefaultStallAfter is how long a client waits, with the stages idle, before it gives up
// a trace. It is longer than any redelivery backoff, during which stages are idle too.
const DefaultStallAfter = 20 * time.Second

// watched are the consumers whose work a trace waits for, in pipeline order.
func watched() []struct{ stream, name string } {
	return []struct{ stream, name string }{
		{bus.StepsStream, Evaluator},
		{bus.ResultsStream, Explainer},
	}
}

// ClientOptions tune a client.
type ClientOptions struct {
	// Purge removes a trace's events from the streams once it is done, for one-shot runs
	// that keep streams in memory.
	Purge bool
	// StallAfter is how long the stages may have nothing in hand while a trace is
	// unfinished before the trace is given up; zero means DefaultStallAfter.
	StallAfter time.Duration
}

// NewClient starts listening for results. Traces are evaluated with the policy of the given
// hash.
func NewClient(ctx context.Context, b *bus.Bus, policy string, opts ClientOptions) (*Client, error) {
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	if opts.StallAfter <= 0 {
		opts.StallAfter = DefaultStallAfter
	}
	c := &Client{b: b, policy: policy, prefix: hex.EncodeToString(id[:]), opts: opts,
		waiting: map[string]*waiter{}, inFlight: map[string]int{}, done: make(chan error, 1)}
	ctx, c.stop = context.WithCancel(ctx)
	subs := []struct{ stream, filter string }{
		{bus.ResultsStream, event.ResultFilter(event.KindExplained)},
		{bus.DeadStream, event.DeadPrefix + ".>"},
	}
	var dones []<-chan error
	for _, s := range subs {
		ready, done := b.Subscribe(ctx, s.stream, s.filter, c.deliver)
		<-ready
		select {
		case err := <-done:
			c.stop()
			for _, d := range dones {
				<-d
			}
			if err == nil {
				err = ctx.Err()
			}
			return nil, err
		default:
		}
		dones = append(dones, done)
	}
	go func() {
		c.watch(ctx)
		var err error
		for _, d := range dones {
			err = errors.Join(err, <-d)
		}
		c.done <- err
	}()
	return c, nil
}

// Close stops listening.
func (c *Client) Close() {
	c.stop()
	<-c.done
}

func (c *Client) waiter(run string) *waiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting[run]
}

func (c *Client) deliver(e event.Envelope) {
	switch e.Kind {
	case event.KindExplained:
		ev, err := event.Decode[event.Explained](e)
		if err != nil {
			return
		}
		if w := c.waiter(ev.Run); w != nil {
			w.finish(outcome{ev: ev})
		}
	case event.KindDead:
		dl, err := event.Decode[event.DeadLetter](e)
		if err != nil || dl.Trace == nil {
			return
		}
		if w := c.waiter(dl.Trace.Run); w != nil {
			w.finish(outcome{err: fmt.Errorf("the %s stage gave up its %s event: %s", dl.Stage, dl.Kind, dl.Error)})
		}
	}
}

// watch gives up the traces waited for once the stages they need have had nothing in
// hand for StallAfter: such a trace was lost, or a stage it needs is not running.
func (c *Client) watch(ctx context.Context) {
	tick := time.NewTicker(max(c.opts.StallAfter/20, 10*time.Millisecond))
	defer tick.Stop()
	var idleSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		waiting := make([]*waiter, 0, len(c.waiting))
		for _, w := range c.waiting {
			if w.sent.Load() { // a trace still being sent is the client's to wait for
				waiting = append(waiting, w)
			}
		}
		c.mu.Unlock()
		if len(waiting) == 0 || c.busy(ctx) {
			idleSince = time.Time{}
			continue
		}
		if idleSince.IsZero() {
			idleSince = time.Now()
			continue
		}
		if time.Since(idleSince) < c.opts.StallAfter {
			continue
		}
		for _, w := range waiting {
			// The result may be stored and only its delivery missed: look before giving up.
			if ev, ok := c.lookup(ctx, w.ref); ok {
				w.finish(outcome{ev: ev})
				continue
			}
			w.finish(outcome{err: fmt.Errorf("the pipeline has been idle for %s and the trace is unfinished: %s", c.opts.StallAfter, c.progress(ctx, w.ref))})
		}
		idleSince = time.Time{}
	}
}

// busy reports whether any stage a trace waits for has events pending or in hand. A
// consumer that is not there has nothing in hand.
func (c *Client) busy(ctx context.Context) bool {
	for _, w := range watched() {
		lag, err := c.b.Lag(ctx, w.stream, w.name)
		if err == nil && lag > 0 || err != nil && !bus.IsNotFound(err) {
			return true // an error other than "no such consumer" proves nothing
		}
	}
	return false
}

// lookup finds a run's stored explained event.
func (c *Client) lookup(ctx context.Context, ref event.TraceRef) (event.Explained, bool) {
	var found event.Explained
	ok := false
	_ = c.b.Scan(ctx, bus.ResultsStream, event.ResultSubject(event.KindExplained, ref.AgentName, ref.TraceID), 0, math.MaxUint64, func(e event.Envelope) error {
		if ev, err := event.Decode[event.Explained](e); err == nil && ev.Run == ref.Run {
			found, ok = ev, true
		}
		return nil
	})
	return found, ok
}

// progress says how far a run got through the stages, for an error.
func (c *Client) progress(ctx context.Context, ref event.TraceRef) string {
	has := func(kind event.Kind) bool {
		found := false
		_ = c.b.Scan(ctx, bus.ResultsStream, event.ResultSubject(kind, ref.AgentName, ref.TraceID), 0, math.MaxUint64, func(e event.Envelope) error {
			if r, err := event.RefOf(e); err == nil && r.Run == ref.Run {
				found = true
			}
			return nil
		})
		return found
	}
	switch {
	case has(event.KindScored):
		return "it was scored but not explained (is an explainer running?)"
	}
	return "it was not evaluated (is an evaluator running?)"
}

// Result is what the pipeline found about one trace.
type Result struct {
	Explained    event.Explained
	Violations   []schemas.Violation
	Explanations []schemas.StepExplanation
}

// Audit assembles the audit of the trace from its result; info describes the policy.
func (r *Result) Audit(t *schemas.Trace, info schemas.AuditInfo) *schemas.AuditResult {
	return r.Explained.Audit(t, r.Violations, r.Explanations, info)
}

// publishWindow is how many events of a trace are encoded and in flight at once: a long
// trace is sent without holding all of its events encoded.
const publishWindow = 1024

// Audit sends a trace (every step, then its end) and waits until it is scored and
// explained; it returns that result with the trace's violations and step explanations.
func (c *Client) Audit(ctx context.Context, t *schemas.Trace) (*Result, error) {
	run := c.prefix + "-" + strconv.FormatInt(c.n.Add(1), 36)
	ref := event.TraceRef{TraceID: t.TraceID, AgentName: t.AgentName, Policy: c.policy, Run: run}
	subject := event.StepsSubject(t.AgentName, t.TraceID)
	w := &waiter{ref: ref, out: make(chan outcome, 1)}
	c.mu.Lock()
	c.waiting[run] = w
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
		if c.opts.Purge && last {
			ctx := context.WithoutCancel(ctx)
			_ = c.b.Purge(ctx, bus.StepsStream, subject)
			_ = c.b.Purge(ctx, bus.ResultsStream, event.ResultSubject("*", t.AgentName, t.TraceID))
		}
	}()
	if err := c.send(ctx, t, ref, subject); err != nil {
		return nil, err
	}
	w.sent.Store(true)
	var o outcome
	select {
	case o = <-w.out:
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return nil, fmt.Errorf("no result in time: %s", c.progress(pctx, ref))
		}
		return nil, err
	}
	if o.err != nil {
		return nil, o.err
	}
	r := &Result{Explained: o.ev}
	var err error
	if r.Violations, r.Explanations, err = event.ReadResults(ctx, c.b, &o.ev); err != nil {
		return nil, err
	}
	return r, nil
}

// send publishes a trace's steps and its end, a window at a time.
func (c *Client) send(ctx context.Context, t *schemas.Trace, ref event.TraceRef, subject string) error {
	return SendTrace(ctx, c.b, t, ref, 0)
}

// SendTrace publishes a trace's steps and its end on b, a window at a time. from is how
// many steps of the trace were sent before: these continue them, and the end counts all.
// A step over the server's event limit is a *event.Permanent error: no retry sends it.
func SendTrace(ctx context.Context, b *bus.Bus, t *schemas.Trace, ref event.TraceRef, from int) error {
	limit := b.MaxEventSize()
	window := make([]event.Envelope, 0, min(len(t.Steps)+1, publishWindow))
	for i, s := range t.Steps {
		e, err := encodeStep(event.Step{TraceRef: ref, TraceMetadata: t.Metadata, Seq: from + i, Step: s}, limit)
		if err != nil {
			return err
		}
		window = append(window, e)
		if len(window) == cap(window) {
			if err := b.PublishAll(ctx, window); err != nil {
				return err
			}
			window = window[:0]
		}
	}
	end, err := event.New(event.End{TraceRef: ref, Steps: from + len(t.Steps)})
	if err != nil {
		return &event.Permanent{Err: err}
	}
	return b.PublishAll(ctx, append(window, end))
}

// Auditor audits traces through the pipeline, assembling the same audit as the in-process
// engine from the pipeline's results.
type Auditor struct {
	Client *Client
	Info   schemas.AuditInfo // describes the client's policy
	// Timeout bounds the wait for one trace's results; zero leaves it to the client, which
	// fails a trace the stages give up or leave idle.
	Timeout time.Duration
	release func() // what OpenLocal and Dial opened for the client
	// local, when set, is the policy an auditor without a client evaluates traces against
	// in this process (see OpenLocal); note is then why there are no explanations.
	local  *evaluator.Compiled
	note   string
	closed atomic.Bool
}

// Close stops the client and releases what OpenLocal or Dial opened.
func (a *Auditor) Close() {
	a.closed.Store(true)
	if a.Client != nil {
		a.Client.Close()
	}
	if a.release != nil {
		a.release()
	}
}

// Audit sends one trace and assembles its audit.
func (a *Auditor) Audit(ctx context.Context, t *schemas.Trace) (*schemas.AuditResult, error) {
	if a.local != nil {
		return a.auditHere(ctx, t)
	}
	if a.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.Timeout)
		defer cancel()
	}
	r, err := a.Client.Audit(ctx, t)
	if err != nil {
		return nil, err
	}
	return r.Audit(t, a.Info), nil
}

// auditHere audits a trace in this process, failing where the pipeline would: a closed
// auditor, and a step too big to travel as an event.
func (a *Auditor) auditHere(ctx context.Context, t *schemas.Trace) (*schemas.AuditResult, error) {
	if a.closed.Load() {
		return nil, errors.New("the auditor is closed")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ref := event.TraceRef{TraceID: t.TraceID, AgentName: t.AgentName, Policy: a.local.Hash(), Run: localRun}
	for i, s := range t.Steps {
		if _, err := encodeStep(event.Step{TraceRef: ref, TraceMetadata: t.Metadata, Seq: i, Step: s}, bus.MaxEventSize); err != nil {
			return nil, err
		}
	}
	return audit.Result(a.local, t, a.note), nil
}

// localRun stands for a client's run name when sizing events: as long as a first one.
const localRun = "000000000000-1"

// encodeStep encodes a step's event, failing when it is over the limit.
func encodeStep(st event.Step, limit int) (event.Envelope, error) {
	e, err := event.New(st)
	if err != nil {
		return e, &event.Permanent{Err: err}
	}
	if len(e.Data) > limit {
		return e, &event.Permanent{Err: fmt.Errorf("step %s is %d bytes encoded, over the %d-byte event limit of this NATS server", st.Step.StepID, len(e.Data), limit)}
	}
	return e, nil
}
