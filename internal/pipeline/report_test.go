package pipeline_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// publishTrace publishes a trace's steps and its end, and waits for its reported event.
func publishTrace(t *testing.T, ctx context.Context, b *bus.Bus, tr *schemas.Trace) event.Reported {
	t.Helper()
	reported := results[event.Reported](ctx, b, event.ResultSubject(event.KindReported, tr.AgentName, tr.TraceID))
	ref := event.TraceRef{TraceID: tr.TraceID, AgentName: tr.AgentName, Run: "r1"}
	publishSteps(t, ctx, b, ref, tr)
	e, err := event.New(event.End{TraceRef: ref, Steps: len(tr.Steps), Reason: event.EndSent})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, e); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-reported:
		return r
	case <-ctx.Done():
		t.Fatal("no report")
	}
	return event.Reported{}
}

// publishSteps publishes a trace's steps as a live agent does, without its end.
func publishSteps(t *testing.T, ctx context.Context, b *bus.Bus, ref event.TraceRef, tr *schemas.Trace) {
	t.Helper()
	for i, s := range tr.Steps {
		e, err := event.New(event.Step{TraceRef: ref, TraceMetadata: tr.Metadata, Seq: i, Step: s})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
}

func fetch(ctx context.Context, b *bus.Bus, agent, trace, file string) ([]byte, error) {
	data, _, err := event.FetchReport(ctx, b.Request, event.ReportRequest{Agent: agent, Trace: trace, File: file})
	return data, err
}

// A report asked for is the report the stage writes to files, byte for byte, signed as
// it signs them; a report larger than a message comes in parts.
func TestReportsAskedForAreTheFilesWritten(t *testing.T) {
	for _, steps := range []int{5, 300} {
		dir := t.TempDir()
		sg := testSigner(t)
		b, pol, _ := start(t, pipeline.Config{ReportDir: dir, Signer: sg, ExplainNote: "off"})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := merged(t)
		if steps > 100 {
			c = everyStep(t, 4) // cheap rules, and a verdict that makes the report large
		}
		if _, err := pol.SetDefault(ctx, c); err != nil {
			t.Fatal(err)
		}
		tr := tracegen.New(tracegen.Options{Steps: steps, Seed: 3, BadRate: 0.3}).Trace()
		r := publishTrace(t, ctx, b, tr)
		for file, path := range map[string]string{event.ReportMarkdown: r.Report, event.ReportJSON: r.AuditJSON} {
			written, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fetch(ctx, b, tr.AgentName, tr.TraceID, file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, written) {
				t.Fatalf("%d steps, %s asked for (%d bytes) is not the file written (%d bytes)", steps, file, len(got), len(written))
			}
		}
		if info, err := os.Stat(r.AuditJSON); err != nil || steps > 100 && info.Size() <= 512<<10 {
			t.Fatalf("a report of %d steps should need more than one part", steps)
		}
		verifyReports(t, r, sg)
	}
}

// Without a directory the stage writes nothing and says so; the reports asked for verify,
// and a trace not reported is not found.
func TestReportsWithoutFiles(t *testing.T) {
	sg := testSigner(t)
	b, pol, _ := start(t, pipeline.Config{Signer: sg, ExplainNote: "off"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pol.SetDefault(ctx, merged(t)); err != nil {
		t.Fatal(err)
	}
	tr := tracegen.New(tracegen.Options{Steps: 8, Seed: 4, BadRate: 0.5}).Trace()
	r := publishTrace(t, ctx, b, tr)
	if r.Report != "" || r.AuditJSON != "" {
		t.Fatalf("no files were to be written: %+v", r)
	}
	md, err1 := fetch(ctx, b, tr.AgentName, tr.TraceID, event.ReportMarkdown)
	js, err2 := fetch(ctx, b, tr.AgentName, tr.TraceID, event.ReportJSON)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	st, err := reporter.VerifyAudit(js, sg.Key.Public().(ed25519.PublicKey))
	if err != nil || st.Report != reporter.ReportDigest(md) || st.TraceID != tr.TraceID || *st.RiskScore != r.RiskScore {
		t.Fatalf("audit.json: %+v %v", st, err)
	}
	if _, err := reporter.VerifyReport(md, sg.Key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	var re *bus.RequestError
	if _, err := fetch(ctx, b, tr.AgentName, "never-sent", event.ReportJSON); !errors.As(err, &re) || re.Code != "404" {
		t.Errorf("a trace never sent: %v", err)
	}
	// An agent's subject answers for that agent only.
	raw := []byte(`{"agent_name":"` + tr.AgentName + `","trace_id":"` + tr.TraceID + `","file":"audit.json"}`)
	if _, err := b.Request(ctx, event.ReportSubject("someone-else"), raw); !errors.As(err, &re) || re.Code != "403" {
		t.Errorf("another agent's subject: %v", err)
	}
	if _, err := fetch(ctx, b, tr.AgentName, tr.TraceID, "secrets.txt"); !errors.As(err, &re) || re.Code != "400" {
		t.Errorf("a file that is not a report: %v", err)
	}
}
