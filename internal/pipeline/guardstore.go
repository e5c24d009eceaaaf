package pipeline

import (
	"context"
	"errors"
	"sync"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
)

// stepStore stores the guard's events before their answers, the stores of concurrent
// checks together: while one batch waits for its acknowledgements, the events of checks
// that arrive meanwhile queue up, and the next batch publishes them all at once and
// awaits their acknowledgements together. A lone check's event is published at once.
// The check whose event is first in a batch leads it (publishes it and hands the results
// out), so no goroutine of its own stands between a check and the stream.
type stepStore struct {
	b       *bus.Bus
	mu      sync.Mutex
	queue   []*pendingStore
	leading bool // a batch is being stored
}

// pendingStore is one event waiting in the queue. done is signalled once: with the result
// stored, or with lead set when the event's check is to lead the next batch.
type pendingStore struct {
	ev   event.Envelope
	seq  uint64
	err  error
	lead bool
	done chan struct{}
}

// store stores ev and returns its stream sequence. It returns once ev is acknowledged or
// failed, never earlier: a check answers only after its step is stored.
func (q *stepStore) store(ctx context.Context, ev event.Envelope) (uint64, error) {
	p := &pendingStore{ev: ev, done: make(chan struct{}, 1)}
	q.mu.Lock()
	q.queue = append(q.queue, p)
	if q.leading {
		q.mu.Unlock()
		// The batch in flight is bounded by its leader's context; ours would end our wait
		// while the event may still be stored, so the wait is for the outcome.
		<-p.done
		if !p.lead {
			return p.seq, p.err
		}
		q.mu.Lock()
	}
	q.leading = true
	batch := q.queue
	q.queue = nil
	q.mu.Unlock()
	defer func() { // even if publishing panics, so that the stores after it go on
		q.mu.Lock()
		q.handOver()
		q.mu.Unlock()
	}()
	q.publish(ctx, batch)
	return p.seq, p.err
}

// handOver ends the batch in flight: the events that queued meanwhile go next, led by the
// check of the first of them. q.mu is held.
func (q *stepStore) handOver() {
	if len(q.queue) == 0 {
		q.leading = false
		return
	}
	next := q.queue[0]
	next.lead = true
	next.done <- struct{}{}
}

// errNotStored answers the checks of a batch whose publishing broke off.
var errNotStored = errors.New("the batch was not stored")

// publish stores a batch and signals every event of it but the leader's (the first), each
// with its result: an error unless it was acknowledged.
func (q *stepStore) publish(ctx context.Context, batch []*pendingStore) {
	done := false
	defer func() {
		for i, p := range batch {
			if !done {
				p.seq, p.err = 0, errNotStored
			}
			if i > 0 {
				p.done <- struct{}{}
			}
		}
	}()
	envs := make([]event.Envelope, len(batch))
	for i, p := range batch {
		envs[i] = p.ev
	}
	seqs, errs := q.b.PublishEach(ctx, envs)
	for i, p := range batch {
		p.seq, p.err = seqs[i], errs[i]
	}
	done = true
}
