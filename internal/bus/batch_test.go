package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"
)

// ConsumeBatches hands events over in batches bounded by count and by time, holds a batch
// while it cannot be stored, and tries the batch in hand once more when it stops.
func TestConsumeBatches(t *testing.T) {
	tests := []struct {
		name     string
		events   int
		c        BatchConsumer
		failures int  // calls of the handler that fail before it stores
		stopWith bool // stop while a batch is in hand, before it is due
		want     []int
	}{
		{name: "by count, then by time", events: 12, c: BatchConsumer{MaxBatch: 5, MaxWait: 200 * time.Millisecond}, want: []int{5, 5, 2}},
		{name: "held while it fails", events: 3, c: BatchConsumer{MaxBatch: 10, MaxWait: 50 * time.Millisecond, Retry: 20 * time.Millisecond}, failures: 3, want: []int{3}},
		{name: "stored on stop", events: 3, c: BatchConsumer{MaxBatch: 10, MaxWait: 2 * time.Second}, stopWith: true, want: []int{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openMemory(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i := range tt.events {
				if err := b.Publish(ctx, env(t, fmt.Sprintf("troy.steps.a.e%d", i), event.KindStep, "", i)); err != nil {
					t.Fatal(err)
				}
			}
			var (
				mu      sync.Mutex
				calls   int
				stored  []int
				subject = map[string]int{}
			)
			h := func(_ context.Context, batch []event.Envelope) error {
				mu.Lock()
				defer mu.Unlock()
				if calls++; calls <= tt.failures {
					return errors.New("store down")
				}
				stored = append(stored, len(batch))
				for _, e := range batch {
					subject[e.Subject]++
				}
				return nil
			}
			tt.c.Name, tt.c.Stream = "sink", StepsStream
			run, stop := context.WithCancel(ctx)
			stats := &Stats{}
			done := make(chan error, 1)
			go func() { done <- b.ConsumeBatches(run, tt.c, h, stats) }()
			if tt.stopWith {
				// Stop once the consumer holds every event, unacknowledged.
				waitFor(t, 10*time.Second, "the events in hand", func() bool {
					cons, err := b.js.Consumer(ctx, StepsStream, "sink")
					if err != nil {
						return false
					}
					info, err := cons.Info(ctx)
					return err == nil && info.NumAckPending == tt.events
				})
			} else {
				waitFor(t, 10*time.Second, "every event stored", func() bool { return stats.Out.Load() == int64(tt.events) })
			}
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(stored, tt.want) {
				t.Errorf("batches of %v, want %v", stored, tt.want)
			}
			for i := range tt.events {
				if n := subject[fmt.Sprintf("troy.steps.a.e%d", i)]; n != 1 {
					t.Errorf("event %d stored %d times", i, n)
				}
			}
			if calls != len(tt.want)+tt.failures || stats.Failed.Load() != int64(tt.failures) {
				t.Errorf("%d calls, %d failed; want %d and %d", calls, stats.Failed.Load(), len(tt.want)+tt.failures, tt.failures)
			}
		})
	}
}
