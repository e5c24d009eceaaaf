// Package otlpreceiver receives OpenTelemetry traces over OTLP (HTTP with protobuf or
// JSON, and gRPC), turns the spans of agents (the GenAI conventions, OpenInference,
// OpenLLMetry, the Vercel AI SDK) into troy traces with ingest/otel, and hands each trace
// to the pipeline when it is complete: when its root span has come and it has been quiet
// for a moment, or when it has been idle longer.
package otlpreceiver

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/ingest/otel"
	"github.com/troy-audit/troy/schemas"
)

// Defaults of Config.
const (
	DefaultMaxBody  = 16 << 20
	DefaultIdle     = 30 * time.Second
	DefaultMaxQueue = 16384
	DefaultSettle   = 2 * time.Second
	// DefaultMaxHeldBytes is half of what the assembler holds of open traces by default
	// (without Limits.MaxPendingBytes set; with it, half of that).
	DefaultMaxHeldBytes = otel.DefaultMaxPendingBytes / 2
)

// Publish hands a trace to the pipeline: its steps and its end. earlier is how many steps
// of the trace were published before (these spans came late): the pipeline then has to
// see them with the earlier ones, as a new run of the trace.
type Publish func(ctx context.Context, t *schemas.Trace, earlier int) error

// Config configure a Receiver.
type Config struct {
	Publish Publish // required
	// MaxBody bounds a request's body, after decompression; 0: DefaultMaxBody.
	MaxBody int64
	// Idle closes a trace whose root span has not come after this long without spans;
	// 0: DefaultIdle.
	Idle time.Duration
	// Settle is how long a trace whose root span has come waits for more spans (children
	// exported after their parent) before it is published; 0: DefaultSettle.
	Settle time.Duration
	// MaxQueue bounds the traces waiting to be published, and those settling; while
	// either is full, exports are refused as retryable (the exporters retry).
	// 0: DefaultMaxQueue.
	MaxQueue int
	// MaxHeldBytes bounds the bytes of the traces settling and waiting to be published,
	// as MaxQueue bounds their number; 0: DefaultMaxHeldBytes.
	MaxHeldBytes int64
	Limits       otel.Limits
	Logger       *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Counts are what the receiver did since it started, for /metrics.
type Counts struct {
	otel.Stats
	Exports        int64 // export requests taken
	RefusedExports int64 // export requests refused whole (bad, too big, busy, unauthorized)
	Traces         int64 // traces published
	FailedTraces   int64 // traces that could not be made (over a limit, bad ids), logged
	PublishErrors  int64 // failed publications, retried
}

// Receiver gathers spans into traces and publishes them. It is safe for concurrent use.
type Receiver struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	asm       *otel.Assembler
	owners    bounded[string]      // trace id -> the agent a scoped token sent its spans for
	published bounded[int]         // trace id -> steps published
	settling  map[string]*settling // traces whose root came, waiting for stragglers
	held      int64                // bytes of the traces settling and queued
	queue     []otel.Trace
	counts    Counts
	wake      chan struct{}
}

// New makes a receiver; Run publishes what it gathers.
func New(cfg Config) (*Receiver, error) {
	if cfg.Publish == nil {
		return nil, errors.New("otlp receiver: no publisher")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.MaxHeldBytes <= 0 {
		cfg.MaxHeldBytes = DefaultMaxHeldBytes
		if cfg.Limits.MaxPendingBytes > 0 {
			cfg.MaxHeldBytes = cfg.Limits.MaxPendingBytes / 2
		}
	}
	if cfg.Settle <= 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	done := cfg.Limits.MaxDoneTraces
	if done <= 0 {
		done = otel.DefaultMaxDoneTraces
	}
	return &Receiver{cfg: cfg, log: cfg.Logger, asm: otel.NewAssembler(cfg.Limits),
		published: newBounded[int](done), settling: map[string]*settling{},
		wake: make(chan struct{}, 1)}, nil
}

// Counts returns what the receiver did so far.
func (r *Receiver) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts
	c.Stats = r.asm.Stats()
	return c
}

// errBusy refuses an export while the queue is full: retryable.
var errBusy = errors.New("troy is publishing the traces it has; retry later")

// Export takes the spans of one export request. agent, when set, is the agent the
// request's token is scoped to: its traces are that agent's, and spans of a trace another
// agent's token sent are refused. It returns how many spans were refused, and why the
// first was.
func (r *Receiver) Export(td ptrace.Traces, agent string) (rejected int, why error, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) >= r.cfg.MaxQueue || len(r.settling) >= r.cfg.MaxQueue || r.held >= r.cfg.MaxHeldBytes {
		r.counts.RefusedExports++
		return 0, nil, errBusy
	}
	r.counts.Exports++
	res := r.asm.AddFor(td, r.cfg.Now(), agent)
	r.settle(r.asm.Ready())
	return res.Rejected, res.Err, nil
}

// settling is a trace whose root span has come, held until no span of it came for Settle.
type settling struct {
	t    otel.Trace
	last time.Time
}

// settle holds ready traces for their stragglers: spans of a trace held are added to it;
// under r.mu.
func (r *Receiver) settle(traces []otel.Trace) {
	now := r.cfg.Now()
	for _, t := range traces {
		r.held += t.Size
		if s := r.settling[t.TraceID]; s != nil && t.Err == nil && s.t.Err == nil {
			s.t.Trace.Steps = append(s.t.Trace.Steps, t.Trace.Steps...)
			otel.SortSteps(s.t.Trace.Steps, stamp)
			s.last = now
			continue
		}
		r.settling[t.TraceID] = &settling{t: t, last: now}
	}
}

// stamp is a step's time, as the assembler writes it (RFC 3339); zero without one.
func stamp(s *schemas.Step) int64 {
	if s.Timestamp == nil {
		return 0
	}
	t, _ := time.Parse(time.RFC3339Nano, *s.Timestamp)
	return t.UnixNano()
}

// settled queues the traces held for Settle without a new span, or all of them; under
// r.mu.
func (r *Receiver) settled(now time.Time, all bool) {
	var out []otel.Trace
	for id, s := range r.settling {
		if all || now.Sub(s.last) >= r.cfg.Settle {
			out = append(out, s.t)
			delete(r.settling, id)
		}
	}
	slices.SortFunc(out, func(a, b otel.Trace) int { return cmp.Compare(a.Seq, b.Seq) })
	r.take(out)
}

// take queues traces for publication; under r.mu.
func (r *Receiver) take(traces []otel.Trace) {
	n := 0
	for _, t := range traces {
		if t.Err != nil {
			r.held -= t.Size
			r.counts.FailedTraces++
			r.log.Warn("otlp: a trace could not be made", "trace", t.TraceID, "err", t.Err)
			continue
		}
		r.queue = append(r.queue, t)
		n++
	}
	if n > 0 {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// Run publishes the traces gathered, closes idle ones, and at the end of ctx closes every
// open trace and publishes it within drain.
func (r *Receiver) Run(ctx context.Context, drain time.Duration) {
	tick := time.NewTicker(min(r.cfg.Idle/4, r.cfg.Settle/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.mu.Lock()
			r.settle(r.asm.Flush())
			r.settled(time.Time{}, true)
			r.mu.Unlock()
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
			r.publishQueued(dctx)
			cancel()
			if left := r.queued(); left > 0 {
				r.log.Error("otlp: traces not published before stopping", "traces", left)
			}
			return
		case <-tick.C:
			now := r.cfg.Now()
			r.mu.Lock()
			r.take(r.asm.Expire(now, r.cfg.Idle))
			r.settled(now, false)
			r.mu.Unlock()
		case <-r.wake:
		}
		r.publishQueued(ctx)
	}
}

func (r *Receiver) queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// publishers is how many traces are published at once: each waits for the server's
// acknowledgements, so that one at a time would bound the rate by a round trip.
const publishers = 16

// publishQueued publishes the queue, publishers traces at a time, retrying failed ones
// with backoff until ctx ends.
func (r *Receiver) publishQueued(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		r.mu.Lock()
		// A trace's late part waits until its earlier part is published.
		n, ids := 0, map[string]bool{}
		for n < len(r.queue) && n < publishers && !ids[r.queue[n].TraceID] {
			ids[r.queue[n].TraceID] = true
			n++
		}
		batch := slices.Clone(r.queue[:n])
		r.queue = r.queue[n:]
		earlier := make([]int, n)
		for i, t := range batch {
			earlier[i], _ = r.published.get(t.TraceID)
		}
		r.mu.Unlock()
		if n == 0 {
			return
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, t := range batch {
			wg.Go(func() { errs[i] = r.cfg.Publish(ctx, t.Trace, earlier[i]) })
		}
		wg.Wait()
		var retry []otel.Trace
		r.mu.Lock()
		for i, t := range batch {
			var perm *event.Permanent
			switch err := errs[i]; {
			case err == nil:
				r.held -= t.Size
				r.published.put(t.TraceID, earlier[i]+len(t.Trace.Steps))
				r.counts.Traces++
			case errors.As(err, &perm):
				r.held -= t.Size
				r.counts.FailedTraces++
				r.log.Error("otlp: a trace cannot be published; dropped", "trace", t.TraceID, "agent", t.Trace.AgentName, "err", err)
			default:
				r.counts.PublishErrors++
				r.log.Warn("otlp: publish a trace; retrying", "trace", t.TraceID, "err", err)
				retry = append(retry, t)
			}
		}
		r.queue = append(retry, r.queue...)
		r.mu.Unlock()
		if len(retry) == 0 {
			backoff = 100 * time.Millisecond
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// bounded is a map that forgets its oldest keys past a size.
type bounded[V any] struct {
	max   int
	m     map[string]V
	order []string
}

func newBounded[V any](max int) bounded[V] {
	return bounded[V]{max: max, m: map[string]V{}}
}

func (b *bounded[V]) get(k string) (V, bool) {
	v, ok := b.m[k]
	return v, ok
}

func (b *bounded[V]) put(k string, v V) {
	if _, ok := b.m[k]; !ok {
		b.order = append(b.order, k)
		for len(b.order) > b.max {
			delete(b.m, b.order[0])
			b.order = b.order[1:]
		}
	}
	b.m[k] = v
}
