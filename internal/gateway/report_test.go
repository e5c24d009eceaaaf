package gateway_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/pipeline"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// The gateway gives a trace's audit.json and report.md as the reporter writes them to
// files, byte for byte, signed.
func TestReportIsTheReportersFile(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g, _ := newGatewayOn(t, bus.Options{Memory: true}, pipeline.Config{ReportDir: dir, ExplainNote: "off", Signer: &reporter.Signer{Key: key, Version: "test"}}, gateway.Config{})
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	step := `{"step_id": "s1", "type": "tool_call", "description": "http_post", "input": {}, "output": {}, "metadata": {"network_zone": "external"}}`
	if r := call(t, srv, "POST", "/v1/steps", token, fmt.Sprintf(`{"trace_id": "t-1", "agent": "bot", "run": "r1", "seq": 0, "step": %s}`, step)); r.status != 202 {
		t.Fatalf("step: %d %s", r.status, r.raw)
	}
	if r := call(t, srv, "POST", "/v1/traces/t-1/end", token, `{"agent": "bot", "run": "r1", "steps": 1}`); r.status != 202 {
		t.Fatalf("end: %d %s", r.status, r.raw)
	}
	waitReport(t, srv, "/v1/traces/t-1/report?agent=bot")
	files := filepath.Join(dir, schemas.Token("bot"), schemas.Token("t-1"))
	for query, file := range map[string]string{"": "audit.json", "&format=json": "audit.json", "&format=markdown": "report.md"} {
		var written []byte
		deadline := time.Now().Add(10 * time.Second)
		for written == nil {
			// The stage writes the files before it says the trace is reported; the report
			// may be asked for (and rendered) before.
			written, _ = os.ReadFile(filepath.Join(files, file))
			if written == nil && time.Now().After(deadline) {
				t.Fatalf("no %s written", file)
			}
			if written == nil {
				time.Sleep(20 * time.Millisecond) // polling for the stage's file, bounded by the deadline
			}
		}
		r := call(t, srv, "GET", "/v1/traces/t-1/report?agent=bot"+query, token, "")
		if r.status != 200 || r.raw != string(written) {
			t.Errorf("%s: %d, %d bytes; the file has %d", file, r.status, len(r.raw), len(written))
		}
	}
	if r := call(t, srv, "GET", "/v1/traces/t-1/report?agent=bot&format=pdf", token, ""); r.status != 400 {
		t.Errorf("an unknown format: %d %s", r.status, r.raw)
	}
}
