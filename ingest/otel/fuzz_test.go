package otel_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/ingest/otel"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// Any OTLP JSON export decodes with a one-line error or assembles into traces that troy's
// trace reader accepts as they are written, with each span id at most once.
func FuzzOTLPJSON(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.otlp.jsonl")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(line) > 0 {
				f.Add(line)
			}
		}
	}
	for _, seed := range []string{
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"llm.input_messages.0.message.role","value":{"stringValue":"user"}},{"key":"gen_ai.input.messages","value":{"stringValue":"[[[[{\"a\":1e999}]]]]"}}]}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","parentSpanId":"0102030405060708","attributes":[{"key":"openinference.span.kind","value":{"stringValue":"TOOL"}},{"key":"input.value","value":{"kvlistValue":{"values":[{"key":"a","value":{"arrayValue":{"values":[{"bytesValue":"AAE="}]}}}]}}}]}]}]}]}`,
		`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a\u0000b"}}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","kind":"SPAN_KIND_CLIENT","attributes":[{"key":"ai.operationId","value":{"stringValue":"ai.toolCall"}},{"key":"ai.toolCall.args","value":{"stringValue":"{\"x\":NaN}"}}]}]}]}]}`,
		`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":""}]}]}]}`,
		`{"resourceSpans":`,
		"{\"resourceSpans\":[]}\n{}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		td, err := otel.DecodeJSON(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("a multi-line error: %q", err)
			}
			return
		}
		a := otel.NewAssembler(otel.Limits{MaxTraceBytes: 1 << 20, MaxDepth: 50})
		if res := a.Add(td, time.Time{}); res.Err != nil && strings.Contains(res.Err.Error(), "\n") {
			t.Fatalf("a multi-line error: %q", res.Err)
		}
		for _, tr := range a.Flush() {
			if tr.Err != nil {
				if strings.Contains(tr.Err.Error(), "\n") {
					t.Fatalf("a multi-line error: %q", tr.Err)
				}
				continue
			}
			seen := map[string]bool{}
			for _, s := range tr.Trace.Steps {
				if seen[s.StepID] {
					t.Fatalf("step %s twice", s.StepID)
				}
				seen[s.StepID] = true
			}
			out, err := pyjson.Marshal(tr.Trace)
			if err != nil {
				t.Fatalf("a trace does not encode: %v", err)
			}
			if _, err := ingest.DecodeTrace(out); err != nil {
				t.Fatalf("troy's reader refuses the trace: %v\n%s", err, out)
			}
		}
	})
}
