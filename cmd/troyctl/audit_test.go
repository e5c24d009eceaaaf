package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/internal/pipeline/pipelinetest"
	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/reporter"
)

// troyctl audit evaluates in process when nothing needs the pipeline's stages (no model,
// no judge). What it writes and prints is byte for byte what the stages give, for every
// example trace against the example policy and every bundled template.
func TestAuditInProcessAsThePipeline(t *testing.T) {
	// The stages a one-shot audit goes through, the explainer without a model.
	url := pipelinetest.Deployment(t, pipeline.Config{Only: []string{pipeline.Evaluator, pipeline.Explainer}, ExplainNote: "--no-explain", NoAlerts: true})
	traces, err := filepath.Glob(example(t, "traces", "*.json"))
	if err != nil || len(traces) == 0 {
		t.Fatalf("no example traces: %v", err)
	}
	pols := append([]string{example(t, "policy.json")}, policies.TemplateNames()...)
	for _, tr := range traces {
		for _, pol := range pols {
			for _, extra := range [][]string{nil, {"--json"}} {
				if extra != nil && pol != pols[0] {
					continue // the summary's shape does not depend on the policy
				}
				name := fmt.Sprintf("%s/%s/%v", filepath.Base(tr), filepath.Base(pol), extra)
				t.Run(name, func(t *testing.T) {
					args := append([]string{"audit", tr, pol, "--no-explain", "-o", "report.md", "-j", "audit.json"}, extra...)
					here := auditIn(t, args...)
					there := auditIn(t, append(args, "--nats", url)...)
					if here.code != there.code || here.stdout != there.stdout {
						t.Fatalf("in process: exit %d\n%s\nthrough the pipeline: exit %d\n%s", here.code, here.stdout, there.code, there.stdout)
					}
					// Reports are signed (TestMain sets a key), and a signature says when: it
					// is the one part left out.
					for _, f := range []string{"report.md", "audit.json"} {
						if !bytes.Equal(reporter.Unsigned(here.files[f]), reporter.Unsigned(there.files[f])) {
							t.Errorf("%s differs:\nin process:\n%s\nthrough the pipeline:\n%s", f, here.files[f], there.files[f])
						}
					}
				})
			}
		}
	}
}

type auditRun struct {
	result
	files map[string][]byte
}

// auditIn runs troyctl in a fresh directory and reads back the reports it wrote there.
func auditIn(t *testing.T, args ...string) auditRun {
	t.Helper()
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	r := auditRun{files: map[string][]byte{}}
	r.code = run(ctx, args, bytes.NewReader(nil), &out, &errb)
	r.stdout, r.stderr = out.String(), errb.String()
	if r.code != 0 {
		t.Logf("troyctl %v: exit %d: %s", args, r.code, r.stderr)
	}
	for _, f := range []string{"report.md", "audit.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("troyctl %v: %v (stderr: %s)", args, err, r.stderr)
		}
		r.files[f] = b
	}
	return r
}
