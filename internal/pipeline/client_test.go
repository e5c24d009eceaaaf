package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/audit"
	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
)

// everyStep compiles a policy whose rules fire at every step, with long descriptions, so
// that a trace's verdict grows fast.
func everyStep(t *testing.T, rules int) *evaluator.Compiled {
	t.Helper()
	var rs []string
	for i := range rules {
		rs = append(rs, fmt.Sprintf(`{"rule_id": "every-%d", "description": "%s", "condition": "step_index >= 0", "severity": "high", "weight": 1}`, i, strings.Repeat("d", 200)))
	}
	p, err := policies.Parse([]byte(`{"policy_id": "every", "rules": [`+strings.Join(rs, ",")+`]}`), "every.json", "every")
	if err != nil {
		t.Fatal(err)
	}
	c, err := evaluator.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A trace whose violations come to several megabytes audits through the pipeline as in
// process: the verdict travels in parts no bigger than the part limit.
func TestLongVerdictTravelsInParts(t *testing.T) {
	b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Explainer}, ExplainNote: "n"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := everyStep(t, 3)
	client := clientFor(t, ctx, b, pol, c, pipeline.ClientOptions{})
	tr := tracegen.New(tracegen.Options{Steps: 3000, Seed: 9}).Trace()
	got, err := (&pipeline.Auditor{Client: client, Info: pipeline.InfoOf(c)}).Audit(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	want := audit.Result(c, tr, "n")
	a, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(a) != string(w) {
		t.Fatalf("pipeline and in-process audits differ (%d and %d bytes)", len(a), len(w))
	}
	if len(got.Violations) != 9000 {
		t.Fatalf("%d violations, want 9000", len(got.Violations))
	}
	var verdict int
	err = b.Scan(ctx, bus.ResultsStream, "troy.results.>", 0, 1<<62, func(e event.Envelope) error {
		if len(e.Data) > event.MaxPartSize {
			return fmt.Errorf("a %s event of %d bytes, over the part limit %d", e.Kind, len(e.Data), event.MaxPartSize)
		}
		if e.Kind == event.KindVerdict {
			verdict++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if verdict < 8 {
		t.Fatalf("%d verdict parts for about 3 MB of violations", verdict)
	}
}

// A step id used by more than one step (as the Python tool's trace files may have) audits
// through the pipeline as in process: every step is evaluated.
func TestRepeatedStepIDs(t *testing.T) {
	b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Explainer}, ExplainNote: "n"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := everyStep(t, 1)
	client := clientFor(t, ctx, b, pol, c, pipeline.ClientOptions{})
	tr := tracegen.New(tracegen.Options{Steps: 4, Seed: 3}).Trace()
	tr.Steps[2].StepID = tr.Steps[0].StepID
	got, err := (&pipeline.Auditor{Client: client, Info: pipeline.InfoOf(c)}).Audit(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	want := audit.Result(c, tr, "n")
	a, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(a) != string(w) || len(got.Violations) != 4 || got.Violations[2].StepID != tr.Steps[0].StepID {
		t.Fatalf("pipeline and in-process audits differ, or miss a step:\n%s\n%s", a, w)
	}
}

// A trace whose event a stage gives up on fails at once, with the stage's reason.
func TestDeadLetterEndsTheWait(t *testing.T) {
	b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Explainer}, ExplainNote: "n"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := clientFor(t, ctx, b, pol, everyStep(t, 1), pipeline.ClientOptions{})
	tr := tracegen.New(tracegen.Options{Steps: 3, Seed: 1}).Trace()
	tr.Steps[2].StepID = "s\x01" // the evaluator refuses a step id with a control character
	_, err := client.Audit(ctx, tr)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "evaluator") || !strings.Contains(err.Error(), "control character") {
		t.Fatalf("got %v (context: %v), want the evaluator's reason before the deadline", err, ctx.Err())
	}
}

// A trace the stages leave unfinished (here: no explainer runs) fails once they have been
// idle for a while, saying how far it got.
func TestIdleStagesEndTheWait(t *testing.T) {
	b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Evaluator}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := clientFor(t, ctx, b, pol, everyStep(t, 1), pipeline.ClientOptions{StallAfter: 500 * time.Millisecond})
	_, err := client.Audit(ctx, tracegen.New(tracegen.Options{Steps: 3, Seed: 1}).Trace())
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "scored but not explained (is an explainer running?)") {
		t.Fatalf("got %v (context: %v), want the stall reported before the deadline", err, ctx.Err())
	}
}
