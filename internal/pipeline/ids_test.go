package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
	"github.com/troy-audit/troy/sdk/llmtest"
)

// Ids as long as the rules allow, and made of characters that each take three bytes in
// a subject, still get their report and the model's replies on disk.
func TestLongestIDsGetTheirReports(t *testing.T) {
	model := llmtest.NewServer(llmtest.Explains)
	defer model.Close()
	dir := t.TempDir()
	ex := explainer.New(explainer.Config{BaseURL: model.URL + "/v1", APIKey: "test", Backoff: time.Millisecond})
	b, pol, p := start(t, pipeline.Config{ReportDir: dir, Explain: ex})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reported := results[event.Reported](ctx, b, "troy.results.reported.>")
	client := clientFor(t, ctx, b, pol, everyStep(t, 1), pipeline.ClientOptions{})
	tr := &schemas.Trace{
		TraceID:   strings.Repeat("/", schemas.MaxIDLength),
		AgentName: strings.Repeat(".", 100),
		Steps: []*schemas.Step{
			{StepID: strings.Repeat("s", schemas.MaxIDLength), Type: schemas.StepToolCall, Description: "read"},
			{StepID: strings.Repeat("é", schemas.MaxIDLength/2), Type: schemas.StepToolCall, Description: "send"},
		},
	}
	tr.Normalize()
	if _, err := client.Audit(ctx, tr); err != nil {
		t.Fatal(err)
	}
	var r event.Reported
	select {
	case r = <-reported:
	case <-ctx.Done():
		t.Fatalf("no report; dead letters: %d", p.Stats[pipeline.Reporter].Dead.Load())
	}
	if !strings.HasPrefix(r.AuditJSON, dir) {
		t.Fatalf("report at %s, outside %s", r.AuditJSON, dir)
	}
	replies, err := os.ReadDir(filepath.Join(filepath.Dir(r.AuditJSON), "llm_responses"))
	if err != nil || len(replies) != 3 { // two steps and the summary
		t.Fatalf("model replies: %v %v", replies, err)
	}
}

// A guard check naming a session longer than ids may be is refused, and the service
// goes on answering: a subject made of it would have cost the service its connection.
func TestGuardRefusesLongIDsAndGoesOn(t *testing.T) {
	b, pol, _ := start(t, pipeline.Config{Only: []string{pipeline.Guard}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := pol.SetDefault(ctx, everyStep(t, 1)); err != nil {
		t.Fatal(err)
	}
	conn := agent.New(b.Conn())
	for _, o := range []agent.GuardOptions{
		{Session: strings.Repeat("z", 4100), Agent: "bot"},
		{Session: "s", Agent: strings.Repeat("a", schemas.MaxIDLength+1)},
		{Session: "line\nbreak", Agent: "bot"},
	} {
		_, err := conn.Guard(o).Check(ctx, "ls", nil, nil, "")
		var re *bus.RequestError
		if !errors.As(err, &re) || re.Code != "400" || !strings.Contains(re.Message, "session") && !strings.Contains(re.Message, "agent") {
			t.Fatalf("session %.20q, agent %.20q: %v, want a 400 naming the id", o.Session, o.Agent, err)
		}
	}
	if !b.Connected() {
		t.Fatal("the service lost its connection")
	}
	d, err := conn.Guard(agent.GuardOptions{Session: "after", Agent: "bot", Mode: schemas.ModeMonitor}).Check(ctx, "ls", nil, nil, "")
	if err != nil || len(d.Violations) != 1 {
		t.Fatalf("a check after them: %+v %v", d, err)
	}
}

// A subject too long to send is refused before it is sent, and the connection stays up.
func TestSubjectTooLongIsRefusedBeforeSending(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	long := event.Envelope{Subject: "troy.steps.a." + strings.Repeat("z", 4100), Kind: event.KindStep, Data: []byte(`{}`)}
	err = b.PublishAll(ctx, []event.Envelope{long})
	var perm *event.Permanent
	if !errors.Is(err, bus.ErrSubjectTooLong) || !errors.As(err, &perm) {
		t.Fatalf("got %v, want a permanent subject-too-long error", err)
	}
	if err := b.Publish(ctx, event.Envelope{Subject: "troy.steps.a.b", Kind: event.KindStep, Data: []byte(`{}`)}); err != nil || !b.Connected() {
		t.Fatalf("publishing after it: %v (connected %v)", err, b.Connected())
	}
}

// A server whose connection NATS closes for good stops, saying why, rather than running
// on with nothing to do: whatever supervises the process starts it again.
func TestServerStopsWhenItsConnectionIsLost(t *testing.T) {
	b, err := bus.Open(context.Background(), bus.Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ready := make(chan struct{})
	srv, err := pipeline.NewServer(b, pipeline.ServeConfig{Config: pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Guard}},
		Policy: "minimal", OnReady: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the server stopped before it was ready: %v", err)
	}
	// A protocol line over the server's limit, sent around the bus's own check: the server
	// closes the connection, and nats.go does not reconnect.
	if err := b.Conn().Publish("troy.steps.a."+strings.Repeat("z", 5000), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrLost) || !strings.Contains(err.Error(), "maximum control line") {
			t.Fatalf("the server stopped with %v, want the lost connection and why", err)
		}
	case <-ctx.Done():
		t.Fatal("the server ran on without its connection")
	}
}
