// Package bench holds load generators for troy deployments, in the style of `nats bench`:
// a guard generator that measures check latency at a given rate and concurrency, and a
// pipeline generator that measures steps per second from publishing to scored results.
package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troy-audit/troy/event"

	"golang.org/x/time/rate"

	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// Latency summarizes request times. JSON keys carry their unit: nanoseconds.
type Latency struct {
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return Latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999), Max: ds[len(ds)-1]}
}

// GuardOptions shape a guard load.
type GuardOptions struct {
	Rate        float64       // checks per second in all; 0 is as fast as possible
	Concurrency int           // callers; zero means 1
	Duration    time.Duration // zero means 10s
	PerSession  int           // checks per session before it ends; zero means 20
	Progress    func(done int64)
}

// GuardResult is what a guard load measured.
type GuardResult struct {
	Checks int64 `json:"checks"`
	Errors int64 `json:"errors"`
	// WithViolations counts the checks that found violations; the load runs in monitor
	// mode, so none of them was refused.
	WithViolations int64   `json:"with_violations"`
	Seconds        float64 `json:"seconds"`
	ChecksPerS     float64 `json:"checks_per_second"`
	Concurrency    int     `json:"concurrency"`
	TargetRate     float64 `json:"target_rate"`
	Latency        Latency `json:"latency"`
	FirstError     string  `json:"first_error,omitempty"`
}

// Guard sends realistic checks (steps of generated agents) to a running guard service.
func Guard(ctx context.Context, conn *agent.Conn, opts GuardOptions) (GuardResult, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Duration <= 0 {
		opts.Duration = 10 * time.Second
	}
	if opts.PerSession <= 0 {
		opts.PerSession = 20
	}
	limit := rate.Inf
	if opts.Rate > 0 {
		limit = rate.Limit(opts.Rate)
	}
	// Burst 1: checks arrive evenly spaced, as from many independent agents, rather than
	// in waves of every caller at once.
	lim := rate.NewLimiter(limit, 1)
	ctx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	var (
		done, errs, violating atomic.Int64
		mu                    sync.Mutex
		all                   []time.Duration
		firstErr              error
		wg                    sync.WaitGroup
	)
	start := time.Now()
	stamp := start.UnixNano()
	for w := range opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := tracegen.New(tracegen.Options{Steps: opts.PerSession, Seed: uint64(w) + 1})
			var mine []time.Duration
			defer func() {
				mu.Lock()
				all = append(all, mine...)
				mu.Unlock()
			}()
			for n := 0; ctx.Err() == nil; n++ {
				t := gen.Trace()
				g := conn.Guard(agent.GuardOptions{Session: fmt.Sprintf("bench-%d-%d-%d", stamp, w, n), Agent: "bench", Mode: schemas.ModeMonitor})
				for _, s := range t.Steps {
					if lim.Wait(ctx) != nil {
						return
					}
					t0 := time.Now()
					d, err := g.Check(ctx, s.Description, s.Input, s.Metadata, s.Type)
					if ctx.Err() != nil {
						return
					}
					mine = append(mine, time.Since(t0))
					if opts.Progress != nil {
						opts.Progress(done.Add(1))
					} else {
						done.Add(1)
					}
					if err != nil {
						if errs.Add(1) == 1 {
							mu.Lock()
							firstErr = err
							mu.Unlock()
						}
						continue
					}
					if len(d.Violations) > 0 {
						violating.Add(1)
					}
				}
				endCtx, endCancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				_ = g.End(endCtx)
				endCancel()
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	r := GuardResult{Checks: done.Load(), Errors: errs.Load(), WithViolations: violating.Load(), Seconds: secs,
		ChecksPerS: float64(done.Load()) / secs, Concurrency: opts.Concurrency, TargetRate: opts.Rate, Latency: summarize(all)}
	if firstErr != nil {
		r.FirstError = firstErr.Error()
	}
	return r, nil
}

// PipelineOptions shape a pipeline load.
type PipelineOptions struct {
	Steps     int // steps in all; zero means 100,000
	PerTrace  int // steps per trace; zero means 20
	Policy    string
	Progress  func(done int64)
	BatchSize int // traces published before waiting for acks; zero means 64, or 1 with a Rate
	// Rate paces publishing at this many steps a second, for a steady load (a soak);
	// zero publishes as fast as the server stores.
	Rate float64
}

// PipelineResult is what a pipeline load measured.
type PipelineResult struct {
	Steps          int     `json:"steps"`
	Traces         int     `json:"traces"`
	Seconds        float64 `json:"seconds"`
	PublishSeconds float64 `json:"publish_seconds"`
	StepsPerS      float64 `json:"steps_per_second"`
	PublishPerS    float64 `json:"published_per_second"`
	Latency        Latency `json:"trace_latency"` // from a trace's end published to its score
	// StepsScored counts the steps the traces' scores say were evaluated, each trace
	// once: Steps when nothing published was lost.
	StepsScored int `json:"steps_scored"`
}

// scoreWatch follows a load's traces to their scores: when each was sent, its latency to
// its score, and when every one is scored.
type scoreWatch struct {
	traces, perTrace int
	progress         func(int64)
	mu               sync.Mutex
	sent             []time.Time
	lat              []time.Duration
	scored           atomic.Int64
	seen             map[int]bool // traces scored, each counted once
	steps            int          // steps their scores counted
	all              chan struct{}
	done             <-chan error
}

// watchScores subscribes to scored traces; index says which trace of the load a score is
// of (false: another's).
func watchScores(ctx context.Context, b *bus.Bus, traces, perTrace int, progress func(int64), index func(event.Scored) (int, bool)) *scoreWatch {
	w := &scoreWatch{traces: traces, perTrace: perTrace, progress: progress, sent: make([]time.Time, traces),
		lat: make([]time.Duration, 0, traces), seen: map[int]bool{}, all: make(chan struct{})}
	ready, done := b.Subscribe(ctx, bus.ResultsStream, event.ResultFilter(event.KindScored), func(e event.Envelope) {
		ev, err := event.Decode[event.Scored](e)
		if err != nil {
			return
		}
		i, ok := index(ev)
		if !ok || i < 0 || i >= traces {
			return
		}
		w.mu.Lock()
		if w.seen[i] {
			w.mu.Unlock()
			return
		}
		w.seen[i], w.steps = true, w.steps+ev.Steps
		if !w.sent[i].IsZero() {
			w.lat = append(w.lat, time.Since(w.sent[i]))
		}
		w.mu.Unlock()
		n := w.scored.Add(1)
		if w.progress != nil {
			w.progress(n * int64(perTrace))
		}
		if n == int64(traces) {
			close(w.all)
		}
	})
	<-ready
	w.done = done
	return w
}

// sentAt notes that traces [from, to) were sent.
func (w *scoreWatch) sentAt(from, to int, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := from; i < to; i++ {
		w.sent[i] = now
	}
}

// wait waits until every trace is scored.
func (w *scoreWatch) wait(ctx context.Context) error {
	select {
	case <-w.all:
		return nil
	case err := <-w.done:
		if err == nil {
			err = errors.New("results stopped")
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("%d of %d traces scored: %w", w.scored.Load(), w.traces, ctx.Err())
	}
}

func (w *scoreWatch) latency() Latency {
	w.mu.Lock()
	defer w.mu.Unlock()
	return summarize(w.lat)
}

// Pipeline publishes generated traces as fast as the deployment takes them and waits until
// every one is scored: end-to-end steps per second, published to evaluated and scored.
func Pipeline(ctx context.Context, b *bus.Bus, opts PipelineOptions) (PipelineResult, error) {
	if opts.Steps <= 0 {
		opts.Steps = 100_000
	}
	if opts.PerTrace <= 0 {
		opts.PerTrace = 20
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 64
		if opts.Rate > 0 {
			opts.BatchSize = 1 // a steady rate, not bursts
		}
	}
	traces := max(1, opts.Steps/opts.PerTrace)
	run := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	gen := tracegen.New(tracegen.Options{Steps: opts.PerTrace, Seed: 99})
	w := watchScores(ctx, b, traces, opts.PerTrace, opts.Progress, func(ev event.Scored) (int, bool) {
		var i int
		_, err := fmt.Sscanf(ev.TraceID, "bench-%d", &i)
		return i, err == nil && ev.Run == run
	})
	start := time.Now()
	var batch []event.Envelope
	var ends []int
	// flush publishes the batch and stamps the traces it ended as sent.
	flush := func() error {
		err := b.PublishAll(ctx, batch)
		batch = batch[:0]
		now := time.Now()
		for _, j := range ends {
			w.sentAt(j, j+1, now)
		}
		ends = ends[:0]
		return err
	}
	for i := range traces {
		t := gen.Trace()
		t.TraceID = fmt.Sprintf("bench-%d", i)
		ref := event.TraceRef{TraceID: t.TraceID, AgentName: "bench", Policy: opts.Policy, Run: run}
		for k, s := range t.Steps {
			e, err := event.New(event.Step{TraceRef: ref, TraceMetadata: t.Metadata, Seq: k, Step: s})
			if err != nil {
				return PipelineResult{}, err
			}
			batch = append(batch, withoutID(e))
		}
		e, err := event.New(event.End{TraceRef: ref, Steps: len(t.Steps)})
		if err != nil {
			return PipelineResult{}, err
		}
		batch = append(batch, withoutID(e))
		ends = append(ends, i)
		if (i+1)%opts.BatchSize == 0 {
			if err := flush(); err != nil {
				return PipelineResult{}, err
			}
			if err := pace(ctx, start, (i+1)*opts.PerTrace, opts.Rate); err != nil {
				return PipelineResult{}, err
			}
		}
	}
	if err := flush(); err != nil {
		return PipelineResult{}, err
	}
	published := time.Since(start)
	if err := w.wait(ctx); err != nil {
		return PipelineResult{}, err
	}
	secs := time.Since(start).Seconds()
	steps := traces * opts.PerTrace
	w.mu.Lock()
	scored := w.steps
	w.mu.Unlock()
	return PipelineResult{Steps: steps, Traces: traces, Seconds: secs, PublishSeconds: published.Seconds(),
		StepsPerS: float64(steps) / secs, PublishPerS: float64(steps) / published.Seconds(), Latency: w.latency(), StepsScored: scored}, nil
}

// pace waits until steps published since start are no more than rate a second allows.
func pace(ctx context.Context, start time.Time, steps int, rate float64) error {
	if rate <= 0 {
		return nil
	}
	wait := time.Until(start.Add(time.Duration(float64(steps) / rate * float64(time.Second))))
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// withoutID leaves out an event's de-duplication id: the load's runs are fresh and sent
// once, so the figures measure the pipeline rather than the server's de-duplication window.
func withoutID(e event.Envelope) event.Envelope {
	e.MsgID = ""
	return e
}
