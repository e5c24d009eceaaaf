package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// lockedBuffer collects a server's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runServer runs a server on b; stop ends it and reports how it ended.
func runServer(t *testing.T, ctx context.Context, b *bus.Bus, cfg pipeline.ServeConfig) (srv *pipeline.Server, stop func()) {
	t.Helper()
	srv, err := pipeline.NewServer(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	return srv, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// A policy stored in the bucket whose rules break limits (some certainly, when it loads;
// some when they run) is still evaluated: those rules are quarantined for the revision,
// logged once and counted, each trace reports them as rule errors at every step, the
// other rules find their violations, and the server goes on answering.
func TestServerQuarantinesRulesOfAStoredPolicy(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	nine := "true"
	for range 9 {
		nine = "all([1,2,3,4,5,6,7,8,9,10], " + nine + ")"
	}
	rules := []map[string]string{
		{"rule_id": "big-repeat", "condition": `len(repeat(repeat("a", 999999), 999999)) > 0`},
		{"rule_id": "nested", "condition": nine},
		{"rule_id": "repeat-at-run-time", "condition": "len(repeat(repeat(step.description, 999999), 999999)) > 0"},
		{"rule_id": "slow", "condition": "let a = 1..(step_index+100000); any(a, any(a, # < 0))"},
		{"rule_id": "tool", "condition": "step.type == 'tool_call'"},
	}
	for _, r := range rules {
		r["description"] = r["rule_id"]
	}
	doc, err := json.Marshal(map[string]any{"policy_id": "stored", "rules": rules})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policies.Parse(doc, "stored.json", "stored")
	if err != nil {
		t.Fatal(err)
	}
	// Stored as an older troy, or another tool, would have: troy refuses it at load.
	raw, err := pol.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	hash := pol.Hash()
	if err := b.PutPolicy(ctx, hash, raw); err != nil {
		t.Fatal(err)
	}

	var logs lockedBuffer
	srv, stop := runServer(t, ctx, b, pipeline.ServeConfig{
		Config: pipeline.Config{
			Only:   []string{pipeline.Evaluator, pipeline.Explainer},
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		},
		Policy:      "minimal", // the default, for traces that name none
		MetricsAddr: "127.0.0.1:0",
	})
	defer stop()
	client, err := pipeline.NewClient(ctx, b, hash, pipeline.ClientOptions{Purge: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	g := tracegen.New(tracegen.Options{Steps: 4, Seed: 3})
	for _, id := range []string{"first", "second"} {
		tr := g.Trace()
		tr.TraceID = id
		tr.Steps[1].Type = schemas.StepToolCall
		res, err := client.Audit(ctx, tr)
		if err != nil {
			t.Fatalf("%s: %v\n%s", id, err, logs.String())
		}
		s := res.Explained
		if s.Policy != hash {
			t.Fatalf("result of %s under %s", s.TraceID, s.Policy)
		}
		if len(res.Violations) == 0 {
			t.Fatalf("%s: the rule within the limits found nothing", id)
		}
		for _, v := range res.Violations {
			if v.RuleID != "tool" {
				t.Fatalf("%s: violation of %s", id, v.RuleID)
			}
		}
		failed := map[string]schemas.RuleError{}
		for _, e := range s.RuleErrors {
			failed[e.RuleID] = e
		}
		for _, r := range rules[:4] {
			e, ok := failed[r["rule_id"]]
			if !ok || e.Count != len(tr.Steps) || e.FirstError == "" {
				t.Fatalf("%s: rule %s: %+v (all: %+v)", id, r["rule_id"], e, s.RuleErrors)
			}
		}
		if id == "second" && !strings.HasPrefix(failed["slow"].FirstError, "rule quarantined after step") {
			t.Fatalf("the slow rule ran again on the second trace: %+v", failed["slow"])
		}
	}
	if health := scrape(t, srv.MetricsURL()+"/healthz"); !strings.Contains(health, `"status":"ok"`) {
		t.Errorf("healthz: %s", health)
	}
	metrics := scrape(t, srv.MetricsURL()+"/metrics")
	for _, want := range []string{
		`troy_rules_quarantined_total{limit="memory"} 2`,
		`troy_rules_quarantined_total{limit="iterations"} 1`,
		`troy_rules_quarantined_total{limit="time"} 1`,
		`troy_rules_quarantined_total{limit="depth"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
	log := logs.String()
	for _, r := range rules[:4] {
		if n := strings.Count(log, "rule_id="+r["rule_id"]+" "); n != 1 {
			t.Errorf("rule %s logged %d times:\n%s", r["rule_id"], n, log)
		}
	}
	if strings.Contains(log, "rule_id=tool ") {
		t.Errorf("the rule within the limits was quarantined:\n%s", log)
	}
}
