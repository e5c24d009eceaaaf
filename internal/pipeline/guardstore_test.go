package pipeline

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/schemas"
)

// queueBatch stores n steps of n sessions as one batch: it holds the queue as a batch in
// flight would, lets n stores queue up behind it, then hands the queue over, so that the
// first of them leads a batch of all n. It returns each store's sequence and error.
func queueBatch(t *testing.T, ctx context.Context, q *stepStore, n int) ([]uint64, []error) {
	t.Helper()
	q.mu.Lock()
	q.leading = true
	q.mu.Unlock()
	type result struct {
		i   int
		seq uint64
		err error
	}
	results := make(chan result, n)
	for i := range n {
		ev, err := event.New(event.Step{TraceRef: event.TraceRef{TraceID: fmt.Sprint("s", i), AgentName: "bot", Run: "r"},
			Step: &schemas.Step{StepID: "1", Description: "read_file", Type: schemas.StepToolCall}})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			seq, err := q.store(ctx, ev)
			results <- result{i, seq, err}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		q.mu.Lock()
		queued := len(q.queue)
		q.mu.Unlock()
		if queued == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d stores queued within 30s", queued, n)
		}
		runtime.Gosched()
	}
	q.mu.Lock()
	q.handOver()
	q.mu.Unlock()
	seqs, errs := make([]uint64, n), make([]error, n)
	for range n {
		select {
		case r := <-results:
			seqs[r.i], errs[r.i] = r.seq, r.err
		case <-ctx.Done():
			t.Fatal("not every store of the batch returned")
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.leading || len(q.queue) > 0 {
		t.Errorf("after the batch: leading %v, %d queued; want idle", q.leading, len(q.queue))
	}
	return seqs, errs
}

// The stores of concurrent checks go out as one batch: every step of it is in the stream
// at the sequence its check was told; and a batch that is not stored (the stream is gone)
// answers every check of it with an error, the guard's fail-closed answer: none is told
// its step is stored.
func TestStepStoreBatch(t *testing.T) {
	for _, stored := range []bool{true, false} {
		t.Run(fmt.Sprint("stored=", stored), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b, err := bus.Open(ctx, bus.Options{Memory: true})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if !stored {
				js, err := jetstream.New(b.Conn())
				if err != nil {
					t.Fatal(err)
				}
				if err := js.DeleteStream(ctx, bus.StepsStream); err != nil {
					t.Fatal(err)
				}
			}
			const n = 8
			seqs, errs := queueBatch(t, ctx, &stepStore{b: b}, n)
			for i := range n {
				if !stored {
					if errs[i] == nil {
						t.Errorf("store %d of a batch without the stream: no error", i)
					}
					continue
				}
				if errs[i] != nil {
					t.Fatalf("store %d: %v", i, errs[i])
				}
				got, err := b.ReadSteps(ctx, event.StepsSubject("bot", fmt.Sprint("s", i)), math.MaxUint64)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 1 || got[0].Seq != seqs[i] {
					t.Errorf("session s%d: %d events stored (first at %v); want 1 at sequence %d", i, len(got), got, seqs[i])
				}
			}
		})
	}
}
