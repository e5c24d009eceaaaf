package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troy-audit/troy/event"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Handler turns one event into the events it produces. It must not know NATS.
type Handler func(ctx context.Context, in event.Envelope) ([]event.Envelope, error)

// Consumer describes a durable consumer and how its handler runs.
type Consumer struct {
	Name   string   // durable name; also the stage's name in dead letters
	Stream string   // stream to consume
	Filter []string // subjects; empty for all
	// Workers handle events concurrently; events of one subject always go to the same
	// worker, so a trace's events are handled in order. Zero means 1.
	Workers int
	// MaxDeliver bounds deliveries of an event whose handling fails; after the last, the
	// event goes to the dead-letter subject. Zero means 5.
	MaxDeliver int
	// BackOff delays redeliveries, one entry per delivery (the last repeats). Empty means
	// 100ms, 1s, 5s, 15s.
	BackOff []time.Duration
	// AckWait is how long the server waits for an ack before redelivering, after a crash
	// of the process handling the event; a handler that runs longer keeps its event with
	// progress signals. Zero means 5s.
	AckWait time.Duration
	// Batch is how many events one fetch asks for. Zero means 128.
	Batch int
	// unwrap turns an event as stored into the event it carries; nil takes it as stored.
	unwrap func(m jetstream.Msg, stored event.Envelope) event.Envelope
}

// Stats counts what a consumer did.
type Stats struct {
	In, Out, Redelivered, Dead, Failed atomic.Int64
	// Owned is how many partitions a partitioned consumer fetches from.
	Owned atomic.Int64
}

// Consume binds a handler to a durable pull consumer and runs until ctx ends; then it stops
// fetching, finishes the events in hand, and returns. Each event is acked only after the
// events its handler produced are stored. A handler error is retried with backoff; a
// event.Permanent error, an oversize event, or the last delivery's error sends the event to
// the dead-letter subject with the reason.
func (b *Bus) Consume(ctx context.Context, c Consumer, h Handler, stats *Stats) error {
	if stats == nil {
		stats = &Stats{}
	}
	c = c.withDefaults()
	cfg := jetstream.ConsumerConfig{
		Durable:        c.Name,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.AckWait,
		MaxDeliver:     c.MaxDeliver + 1, // the last delivery is ours to dead-letter
		MaxAckPending:  c.Workers * c.Batch * 2,
		FilterSubjects: c.Filter,
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, c.Stream, cfg)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", c.Name, err)
	}
	work, stop := startWorkers(c, func(m jetstream.Msg, slot *workerSlot) { b.handle(c, h, m, slot, stats) })
	defer stop()
	b.fetchLoop(ctx, c.Name, cons, func() (int, time.Duration) { return c.Batch, time.Second }, func(batch jetstream.MessageBatch) bool {
		// Events fetched but not handed out when ctx ends are redelivered after AckWait.
		return dispatch(ctx, batch, func(m jetstream.Msg) { work[worker(m.Subject(), c.Workers)] <- m })
	})
	return nil
}

// startWorkers starts c.Workers goroutines, each running fn on the events sent to its
// channel with the slot that watches its event in hand; stop closes the channels and
// waits until every event sent is handled.
func startWorkers(c Consumer, fn func(jetstream.Msg, *workerSlot)) (work []chan jetstream.Msg, stop func()) {
	work = make([]chan jetstream.Msg, c.Workers)
	slots := make([]*workerSlot, c.Workers)
	var wg sync.WaitGroup
	for i := range work {
		work[i] = make(chan jetstream.Msg, c.Batch)
		slots[i] = &workerSlot{}
		wg.Add(1)
		go func(in <-chan jetstream.Msg, slot *workerSlot) {
			defer wg.Done()
			for m := range in {
				fn(m, slot)
			}
		}(work[i], slots[i])
	}
	quit, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		watch(c.AckWait, slots, quit)
	}()
	return work, func() {
		for _, ch := range work {
			close(ch)
		}
		wg.Wait()
		close(quit)
		<-watched
	}
}

// workerSlot holds the event a worker is handling, if any: one slot per worker, watched
// by one ticker per consumer rather than two timers per event.
type workerSlot struct {
	mu     sync.Mutex
	m      jetstream.Msg // nil between events
	start  time.Time
	cancel context.CancelCauseFunc
}

// take puts an event in the slot and returns its handling's context, which ends after
// handlerTimeout; release empties the slot.
func (w *workerSlot) take(m jetstream.Msg) context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	w.mu.Lock()
	w.m, w.start, w.cancel = m, time.Now(), cancel
	w.mu.Unlock()
	return ctx
}

func (w *workerSlot) release() {
	w.mu.Lock()
	cancel := w.cancel
	w.m, w.cancel = nil, nil
	w.mu.Unlock()
	cancel(nil)
}

// errHandlerTimeout ends a handling that ran longer than handlerTimeout.
var errHandlerTimeout = fmt.Errorf("handling took over %s: %w", handlerTimeout, context.DeadlineExceeded)

// watch tells the server, every quarter of ackWait, that each event held longer than that
// is still being worked on, so that it is redelivered quickly after a crash but not while
// a slow handler runs (the first signal comes before half of ackWait has passed), and
// ends the handlings that ran over handlerTimeout; until quit is closed.
func watch(ackWait time.Duration, slots []*workerSlot, quit <-chan struct{}) {
	tick := time.NewTicker(max(ackWait/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-quit:
			return
		case now := <-tick.C:
			for _, w := range slots {
				w.mu.Lock()
				switch held := now.Sub(w.start); {
				case w.m == nil:
				case held >= handlerTimeout:
					w.cancel(errHandlerTimeout)
				case held >= ackWait/4:
					_ = w.m.InProgress()
				}
				w.mu.Unlock()
			}
		}
	}
}

// dispatch hands a batch's events to fn until the batch ends (true) or ctx does (false).
func dispatch(ctx context.Context, batch jetstream.MessageBatch, fn func(jetstream.Msg)) bool {
	msgs := batch.Messages()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return true
			}
			fn(m)
		case <-ctx.Done():
			return false
		}
	}
}

// fetchPause is the pause after a fetch that failed, before asking again.
const fetchPause = 250 * time.Millisecond

// fetchLoop pulls from cons until ctx ends or take says to stop. Before each fetch, next
// says how many events to ask for and how long to wait for them; take gets every batch.
// A Fetch loop rather than the Messages iterator: with explicit acks the iterator was seen
// to stall for seconds; a timeout or a missed heartbeat here just means "fetch again", and
// any other error pauses before the next fetch.
func (b *Bus) fetchLoop(ctx context.Context, name string, cons jetstream.Consumer, next func() (int, time.Duration), take func(jetstream.MessageBatch) bool) {
	for ctx.Err() == nil {
		n, wait := next()
		if ctx.Err() != nil {
			return
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(wait))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("fetch failed", "consumer", name, "err", err)
			sleep(ctx, fetchPause)
			continue
		}
		if !take(batch) {
			return
		}
		if err := batch.Error(); err != nil && !transient(err) && ctx.Err() == nil {
			// Such as no responders while a cluster elects the consumer's new leader: pause
			// rather than ask again at once.
			b.log.Warn("fetch ended with an error", "consumer", name, "err", err)
			sleep(ctx, fetchPause)
		}
	}
}

func (c Consumer) withDefaults() Consumer {
	if c.Workers <= 0 {
		c.Workers = 1
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if len(c.BackOff) == 0 {
		c.BackOff = []time.Duration{100 * time.Millisecond, time.Second, 5 * time.Second, 15 * time.Second}
	}
	if c.AckWait <= 0 {
		c.AckWait = 5 * time.Second
	}
	if c.Batch <= 0 {
		c.Batch = 128
	}
	return c
}

func transient(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, context.DeadlineExceeded)
}

func worker(subject string, n int) int {
	if n == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(subject))
	return int(h.Sum32() % uint32(n))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// handle runs the handler on one event and settles it. It uses its own context: an event
// in hand is finished even while the consumer shuts down. The slot is watched while it
// runs (see watch).
func (b *Bus) handle(c Consumer, h Handler, m jetstream.Msg, slot *workerSlot, stats *Stats) {
	ctx := slot.take(m)
	defer slot.release()
	stats.In.Add(1)
	in, md := envelopeMeta(m)
	deliveries := 1
	if md != nil {
		deliveries = int(md.NumDelivered)
	}
	if deliveries > 1 {
		stats.Redelivered.Add(1)
	}
	if c.unwrap != nil {
		in = c.unwrap(m, in)
	}
	if limit := b.MaxEventSize(); len(in.Data) > limit {
		b.dead(ctx, c, m, in, deliveries, fmt.Errorf("event of %d bytes is over the %d-byte limit", len(in.Data), limit), stats)
		return
	}
	out, err := func() (out []event.Envelope, err error) {
		defer b.recovered(c.Name, &err)
		return h(ctx, in)
	}()
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	if err == nil && len(out) > 0 {
		err = b.PublishAll(ctx, out)
	}
	if err == nil {
		stats.Out.Add(int64(len(out)))
		if err := m.Ack(); err != nil {
			b.log.Warn("ack failed", "consumer", c.Name, "err", err)
		}
		return
	}
	stats.Failed.Add(1)
	var perm *event.Permanent
	if errors.As(err, &perm) || deliveries >= c.MaxDeliver {
		b.dead(ctx, c, m, in, deliveries, err, stats)
		return
	}
	delay := c.BackOff[min(deliveries, len(c.BackOff))-1]
	log := b.traceLog(in)
	log.Info("event failed; will retry", "consumer", c.Name, "subject", in.Subject, "delivery", deliveries, "retry_in", delay, "err", err)
	if err := m.NakWithDelay(delay); err != nil {
		log.Warn("nak failed", "consumer", c.Name, "err", err)
	}
}

// traceLog is the log of an event's handling: with the agent and trace it belongs to,
// when it names them. Made only when a line is written, so that events handled well
// cost no decoding.
func (b *Bus) traceLog(in event.Envelope) *slog.Logger {
	if ref, err := event.RefOf(in); err == nil && ref.TraceID != "" {
		return b.log.With("agent", ref.AgentName, "trace", ref.TraceID)
	}
	return b.log
}

// handlerTimeout bounds one handling of one event.
const handlerTimeout = 5 * time.Minute

// maxDeadData bounds the copy of an event a dead letter keeps; the stream keeps it whole.
const maxDeadData = 64 << 10

func (b *Bus) dead(ctx context.Context, c Consumer, m jetstream.Msg, in event.Envelope, deliveries int, cause error, stats *Stats) {
	dl := event.DeadLetter{Stage: c.Name, Subject: in.Subject, Kind: in.Kind, Error: cause.Error(), Deliveries: deliveries, Data: in.Data}
	// Every event names its trace: whoever waits for it learns, and so do the log lines.
	log := b.log
	if ref, err := event.RefOf(in); err == nil && ref.TraceID != "" {
		dl.Trace = &ref
		log = log.With("agent", ref.AgentName, "trace", ref.TraceID)
	}
	if len(dl.Data) > maxDeadData {
		dl.Data, dl.Truncated = dl.Data[:maxDeadData], true
	}
	env, err := event.New(dl)
	if err == nil {
		err = b.Publish(ctx, env)
	}
	if err != nil {
		// Without a dead letter the event must not be lost: leave it for redelivery.
		log.Error("dead letter failed", "consumer", c.Name, "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	stats.Dead.Add(1)
	log.Warn("event dead-lettered", "consumer", c.Name, "subject", in.Subject, "err", cause)
	if err := m.TermWithReason(cause.Error()); err != nil {
		log.Warn("term failed", "consumer", c.Name, "err", err)
	}
}

// recovered turns a panic of a handler into a permanent error, so that no event can take
// the process down: the panic is logged with its stack, and the event dead-lettered (or
// the request answered with an error).
func (b *Bus) recovered(what string, err *error) {
	if r := recover(); r != nil {
		b.log.Error("handler panicked", "in", what, "panic", r, "stack", string(debug.Stack()))
		*err = &event.Permanent{Err: fmt.Errorf("%s panicked: %v", what, r)}
	}
}
