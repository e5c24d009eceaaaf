package pipeline_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
	"github.com/troy-audit/troy/schemas"
)

// eventually polls cond every 50ms until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, state)
		}
		<-tick.C
	}
}

// counts reads the deduplicated row counts of the sink's tables.
func counts(ctx context.Context, s *warehouse.Store) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, table := range []string{"steps", "traces", "violations"} {
		var n uint64
		if err := s.Conn().QueryRow(ctx, "SELECT count() FROM "+table+" FINAL").Scan(&n); err != nil {
			return nil, err
		}
		out[table] = n
	}
	return out, nil
}

// The sink stores every step, trace and violation once; when ClickHouse dies mid-stream
// the backlog waits in JetStream, and everything arrives once it is back.
func TestSinkSurvivesAClickHouseRestart(t *testing.T) {
	srv := chtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	store, _, err := warehouse.Migrate(ctx, srv.DSN("troy"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b, pol, p := start(t, pipeline.Config{
		Only:  []string{pipeline.Evaluator, pipeline.Explainer, pipeline.Sink},
		Store: store, SinkBatch: 500, SinkWait: 100 * time.Millisecond, ExplainNote: "off",
	})
	c := merged(t)
	client := clientFor(t, ctx, b, pol, c, pipeline.ClientOptions{})
	g := tracegen.New(tracegen.Options{Steps: 12, Seed: 11, BadRate: 0.2})
	want := map[string]uint64{}
	auditAll := func(n int) {
		for i := range n {
			tr := g.Trace()
			tr.TraceID = fmt.Sprintf("%s-%d", tr.TraceID, i)
			got, err := client.Audit(ctx, tr)
			if err != nil {
				t.Fatal(err)
			}
			want["traces"]++
			want["steps"] += uint64(len(tr.Steps))
			want["violations"] += uint64(len(got.Violations))
		}
	}
	caughtUp := func() (bool, string) {
		got, err := counts(ctx, store)
		return err == nil && fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("have %v, want %v (%v)", got, want, err)
	}

	auditAll(40)
	eventually(t, time.Minute, caughtUp)

	srv.Kill()
	failed := p.Stats[pipeline.Sink].Failed.Load()
	auditAll(40) // the pipeline goes on without ClickHouse
	eventually(t, time.Minute, func() (bool, string) {
		return p.Stats[pipeline.Sink].Failed.Load() > failed, "the sink has not noticed that ClickHouse is down"
	})
	srv.Restart()
	eventually(t, 2*time.Minute, caughtUp)
	if want["violations"] == 0 {
		t.Fatal("the generated traces violated nothing; the test proves little")
	}

	var scores uint64
	if err := store.Conn().QueryRow(ctx, "SELECT uniqExact(trace_id, run) FROM traces FINAL WHERE policy = ? AND explanations = ?", c.Hash(), schemas.ExplanationsOff).Scan(&scores); err != nil {
		t.Fatal(err)
	}
	if scores != want["traces"] {
		t.Fatalf("%d traces carry the policy revision and the explanation state, want %d", scores, want["traces"])
	}
}
