package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"
)

// BatchHandler stores a batch of events somewhere else, such as a database. It returns nil
// only once every event of the batch is stored; storing the same event twice must be
// harmless, as a batch is given again after an error or a crash.
type BatchHandler func(ctx context.Context, batch []event.Envelope) error

// BatchConsumer describes a durable consumer that hands its events over in batches.
type BatchConsumer struct {
	Name   string   // durable name
	Stream string   // stream to consume
	Filter []string // subjects; empty for all
	// MaxBatch ends a batch at this many events. Zero means 50000.
	MaxBatch int
	// MaxWait ends a batch this long after its first event arrived. Zero means 1s.
	MaxWait time.Duration
	// Retry bounds the wait between attempts to store a batch that failed. Zero means 5s.
	Retry time.Duration
}

func (c BatchConsumer) withDefaults() BatchConsumer {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 50000
	}
	if c.MaxWait <= 0 {
		c.MaxWait = time.Second
	}
	if c.Retry <= 0 {
		c.Retry = 5 * time.Second
	}
	return c
}

// fetchMax bounds one pull request, so that a large batch is gathered over a few fetches.
const fetchMax = 2000

// ConsumeBatches gathers a durable consumer's events into batches, by count and by time,
// and hands each to h until ctx ends. Events are acknowledged only after h stored their
// batch. While h fails (its store is down), the batch is kept and tried again with
// growing pauses, and no further events are taken: the backlog waits in the stream, and
// nothing is dead-lettered or lost. When ctx ends, the batch in hand is tried once more;
// whatever is not stored then is delivered again to the next consumer.
func (b *Bus) ConsumeBatches(ctx context.Context, c BatchConsumer, h BatchHandler, stats *Stats) error {
	if stats == nil {
		stats = &Stats{}
	}
	c = c.withDefaults()
	cons, err := b.js.CreateOrUpdateConsumer(ctx, c.Stream, jetstream.ConsumerConfig{
		Durable: c.Name,
		// One ack per stored batch: acknowledging the highest sequence acknowledges all below.
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    -1,
		MaxAckPending: 2 * c.MaxBatch,
		// Redelivered events and new ones interleave in a batch: no ordering needed.
		FilterSubjects: c.Filter,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", c.Name, err)
	}
	var (
		msgs  []jetstream.Msg
		first time.Time
	)
	flush := func(ctx context.Context, persist bool) {
		if len(msgs) == 0 {
			return
		}
		if b.store(ctx, c, h, msgs, stats, persist) {
			msgs = msgs[:0]
		}
	}
	// A batch full or old enough is stored before the next fetch, which asks for no more
	// than the batch has room for and waits no longer than the batch may.
	next := func() (int, time.Duration) {
		if len(msgs) > 0 && (len(msgs) >= c.MaxBatch || time.Until(first.Add(c.MaxWait)) <= 0) {
			flush(ctx, true) // a batch not stored is kept only when ctx ended, which ends the loop
		}
		wait := c.MaxWait
		if len(msgs) > 0 {
			wait = time.Until(first.Add(c.MaxWait))
		}
		return min(c.MaxBatch-len(msgs), fetchMax), max(wait, 50*time.Millisecond)
	}
	b.fetchLoop(ctx, c.Name, cons, next, func(batch jetstream.MessageBatch) bool {
		for m := range batch.Messages() {
			if len(msgs) == 0 {
				first = time.Now()
			}
			msgs = append(msgs, m)
		}
		return true
	})
	// One last try for the batch in hand, bounded: what is not stored is redelivered.
	last, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	flush(last, false)
	return nil
}

// store hands a batch to h and acknowledges it once stored. With persist it keeps trying,
// with growing pauses, until the batch is stored or ctx ends; it reports whether the batch
// was stored.
func (b *Bus) store(ctx context.Context, c BatchConsumer, h BatchHandler, msgs []jetstream.Msg, stats *Stats, persist bool) bool {
	envs := make([]event.Envelope, len(msgs))
	var top jetstream.Msg
	var topSeq uint64
	for i, m := range msgs {
		envs[i] = envelope(m)
		if envs[i].Seq >= topSeq {
			top, topSeq = m, envs[i].Seq
		}
		if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 {
			stats.Redelivered.Add(1)
		}
	}
	stats.In.Add(int64(len(msgs)))
	pause := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := func() (err error) {
			defer b.recovered(c.Name, &err)
			return h(ctx, envs)
		}()
		if err == nil {
			if attempt > 1 {
				b.log.Info("batch stored after failures", "consumer", c.Name, "events", len(envs), "attempts", attempt)
			}
			stats.Out.Add(int64(len(envs)))
			if err := top.Ack(); err != nil {
				// Not acknowledged means delivered again: stored twice, which is harmless.
				b.log.Warn("ack failed", "consumer", c.Name, "err", err)
			}
			return true
		}
		stats.Failed.Add(1)
		if !persist || ctx.Err() != nil {
			b.log.Warn("batch not stored; it will be delivered again", "consumer", c.Name, "events", len(envs), "err", err)
			return false
		}
		if attempt == 1 || attempt%10 == 0 {
			b.log.Warn("batch not stored; holding it and trying again", "consumer", c.Name, "events", len(envs), "attempt", attempt, "err", err)
		}
		sleep(ctx, pause)
		pause = min(2*pause, c.Retry)
	}
}
