package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/scorer"
)

// Two evaluator processes on one NATS server share the steps stream: each evaluates
// some of the traces, and when one is killed with SIGKILL in the middle of them, the
// other takes over its partitions and its open traces. Every trace is scored once, with
// the score event a single in-process evaluation gives, byte for byte. Outputs arrive as
// events of their own after their steps, so state that went stale would change verdicts.
func TestEvaluatorsSharePartitionsAndTakeOver(t *testing.T) {
	nats := startNATS(t)
	const policy, partitions, traces, steps = "agent_safety", 8, 120, 12
	c, err := loadPolicy(&app{stderr: io.Discard}, policy)
	if err != nil {
		t.Fatal(err)
	}
	metrics := freePorts(t, 2)
	evaluators := make([]*process, 2)
	for i := range evaluators {
		evaluators[i] = startServe(t, "--nats", nats.url, "--only", "evaluator", "--evaluator-partitions", strconv.Itoa(partitions),
			"--policy", policy, "--idle-timeout", "0", "--data-dir", t.TempDir(), "--metrics", fmt.Sprintf("127.0.0.1:%d", metrics[i]))
	}
	// The two divide the partitions between them before anything is published.
	for deadline := time.Now().Add(time.Minute); ; {
		a, b := metric(t, metrics[0], "troy_partitions_owned"), metric(t, metrics[1], "troy_partitions_owned")
		if a > 0 && b > 0 && a+b == partitions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions owned: %v and %v, want %d between them", a, b, partitions)
		}
		time.Sleep(50 * time.Millisecond) // polling metrics, bounded by the deadline
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: nats.url, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// Round k publishes step k of every trace without its output, and the output of step
	// k-1: traces are open in both processes at any time.
	gen := tracegen.New(tracegen.Options{Steps: steps, Seed: 7, BadRate: 0.2})
	all := make([]*schemas.Trace, traces)
	want := map[string][]byte{}
	for i := range all {
		tr := gen.Trace()
		tr.TraceID = fmt.Sprint("shared-", i)
		all[i] = tr
		res := c.Evaluate(tr)
		ref := event.TraceRef{TraceID: tr.TraceID, AgentName: tr.AgentName, Policy: c.Hash(), Run: "r1"}
		ev, _, err := event.Verdict(ref, len(tr.Steps), res.Violations, res.RuleErrors)
		if err != nil {
			t.Fatal(err)
		}
		scored, err := event.New(event.Scored{Evaluated: ev, RiskScore: scorer.ScoreRules(ev.Rules, c.Weights())})
		if err != nil {
			t.Fatal(err)
		}
		want[tr.TraceID] = scored.Data
	}
	round := func(k int) []event.Envelope {
		var out []event.Envelope
		for _, tr := range all {
			ref := event.TraceRef{TraceID: tr.TraceID, AgentName: tr.AgentName, Run: "r1"}
			if k > 0 && tr.Steps[k-1].Output != nil {
				out = append(out, mustEvent(t, event.Output{TraceRef: ref, StepID: tr.Steps[k-1].StepID, Output: tr.Steps[k-1].Output}))
			}
			switch {
			case k < len(tr.Steps):
				s := *tr.Steps[k]
				s.Output = nil
				out = append(out, mustEvent(t, event.Step{TraceRef: ref, TraceMetadata: tr.Metadata, Seq: k, Step: &s}))
			case k == len(tr.Steps):
				out = append(out, mustEvent(t, event.End{TraceRef: ref, Steps: len(tr.Steps)}))
			}
		}
		return out
	}
	for k := range steps / 2 {
		if err := b.PublishAll(ctx, round(k)); err != nil {
			t.Fatal(err)
		}
	}
	// Both evaluate before one is killed.
	for i := range evaluators {
		for deadline := time.Now().Add(time.Minute); metric(t, metrics[i], `troy_events_in_total{component="evaluator"}`) == 0; {
			if time.Now().After(deadline) {
				t.Fatalf("evaluator %d took no event:\n%s", i, evaluators[i].log())
			}
			time.Sleep(50 * time.Millisecond) // polling metrics, bounded by the deadline
		}
	}
	if err := evaluators[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = evaluators[0].cmd.Wait()
	for k := steps / 2; k <= steps; k++ {
		if err := b.PublishAll(ctx, round(k)); err != nil {
			t.Fatal(err)
		}
	}

	for _, tr := range all {
		subject := event.ResultSubject(event.KindScored, tr.AgentName, tr.TraceID)
		var got []event.Envelope
		for deadline := time.Now().Add(2 * time.Minute); len(got) == 0; {
			if got, err = b.ReadResults(ctx, subject, math.MaxUint64); err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 && time.Now().After(deadline) {
				t.Fatalf("trace %s was never scored; the evaluator left:\n%s", tr.TraceID, evaluators[1].log())
			}
			if len(got) == 0 {
				time.Sleep(50 * time.Millisecond) // polling the stream, bounded by the deadline
			}
		}
		if len(got) != 1 {
			t.Errorf("trace %s scored %d times", tr.TraceID, len(got))
		}
		if !bytes.Equal(got[0].Data, want[tr.TraceID]) {
			t.Errorf("trace %s scored\n%s\nwant (one evaluation in process)\n%s", tr.TraceID, got[0].Data, want[tr.TraceID])
		}
	}
}

func mustEvent(t *testing.T, p event.Payload) event.Envelope {
	t.Helper()
	e, err := event.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// metric reads a series without labels, or with those given, from serve's /metrics.
func metric(t *testing.T, port int, series string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			n, _ := strconv.ParseFloat(rest, 64)
			return n
		}
	}
	return 0
}
