package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const genaiOTLP = "otel/testdata/genai-agent.otlp.jsonl"

func readAll(t *testing.T, path string, opts Options) []Record {
	t.Helper()
	var recs []Record
	if err := ReadFile(context.Background(), path, opts, func(r Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

// OTLP JSON files are told from trace files by their content, whatever their name, plain
// or gzipped, one export per line or one document.
func TestOTLPFiles(t *testing.T) {
	data, err := os.ReadFile(genaiOTLP)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	first, _, _ := bytes.Cut(data, []byte("\n"))
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, first, "", "  "); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"run.otlp.jsonl":    data,
		"run.json":          data, // the collector's file exporter writes .json
		"run.otlp.jsonl.gz": gz.Bytes(),
		"one.json":          pretty.Bytes(),
	}
	for name, content := range files {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, content, 0o644); err != nil {
				t.Fatal(err)
			}
			recs := readAll(t, path, Options{})
			if len(recs) != 1 || recs[0].Err != nil {
				t.Fatalf("%+v", recs)
			}
			tr := recs[0].Trace
			wantSteps := 8 // six spans, and the decisions of the two model calls that chose tools
			if name == "one.json" {
				wantSteps = 2 // the first export holds the first span only: a model call and its choice
			}
			if tr.AgentName == "" || len(tr.Steps) != wantSteps || recs[0].Line != 1 || len(tr.TraceID) != 32 {
				t.Fatalf("agent %q, %d steps, line %d, trace %q", tr.AgentName, len(tr.Steps), recs[0].Line, tr.TraceID)
			}
			if name != "one.json" {
				lt, err := LoadTrace(context.Background(), path, Options{})
				if err != nil || lt.AgentName != "support-assistant" {
					t.Fatalf("%v %+v", err, lt)
				}
			}
		})
	}
}

// Bad lines name the file, the line and the field; the other traces are read.
func TestOTLPErrors(t *testing.T) {
	good, _ := os.ReadFile(genaiOTLP)
	noTrace := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"0102030405060708","name":"x"}]}]}]}`
	badKind := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","kind":"NOPE"}]}]}]}`
	two := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"c","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}}]}]}]}]}`
	content := string(good) + "{\"resourceSpans\": [\n" + noTrace + "\n" + badKind + "\n\n" + two + "\n"
	path := filepath.Join(t.TempDir(), "mixed.otlp.jsonl")
	os.WriteFile(path, []byte(content), 0o644)
	recs := readAll(t, path, Options{})
	var errs []string
	traces := 0
	for _, r := range recs {
		if r.Err != nil {
			errs = append(errs, r.Err.Error())
		} else {
			traces++
		}
	}
	want := []string{
		path + ":10: column 19: invalid JSON: unexpected end of JSON input",
		path + ":11: resourceSpans[0].scopeSpans[0].spans[0].traceId: expected a 16-byte trace id, got none",
		path + ":12: not an OTLP trace export: ReadEnumValue: unknown string value",
	}
	if traces != 2 || strings.Join(errs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%d traces; errors:\n%s\nwant:\n%s", traces, strings.Join(errs, "\n"), strings.Join(want, "\n"))
	}
	if _, err := LoadTrace(context.Background(), path, Options{}); err == nil || !strings.Contains(err.Error(), ":10: column 19") {
		t.Fatalf("%v", err)
	}
	// Over the size limit, the file as a whole.
	err := ReadFile(context.Background(), genaiOTLP, Options{MaxSize: 1000}, func(Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "OTLP file is over the 1000 bytes limit") {
		t.Fatalf("%v", err)
	}
}

// A file of spans none of which is a step says so.
func TestOTLPNoSteps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "http.json")
	os.WriteFile(path, []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"GET /"}]}]}]}`), 0o644)
	err := ReadFile(context.Background(), path, Options{}, func(Record) error { return nil })
	if err == nil || err.Error() != path+": no trace with steps: none of its 1 spans follows a GenAI convention troy reads (docs/OTEL.md)" {
		t.Fatalf("%v", err)
	}
}

// Any file that starts as OTLP JSON reads with one-line errors, never a panic, and every
// trace it gives has a line.
func FuzzOTLPFile(f *testing.F) {
	good, err := os.ReadFile(genaiOTLP)
	if err != nil {
		f.Fatal(err)
	}
	// Two lines of the SDK's run, so that minimizing what the fuzzer finds stays quick.
	lines := bytes.SplitAfter(good, []byte("\n"))
	f.Add(bytes.Join(lines[:2], nil))
	f.Add([]byte("{\"resourceSpans\": [\n]}\n"))
	f.Add([]byte("{\"resourceSpans\":[]}\n\n{\"resourceSpans\":[{}]}\r\n{\"resourceSpans\""))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "f.otlp.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		err := ReadFile(context.Background(), path, Options{MaxSize: 1 << 20}, func(r Record) error {
			if r.Err != nil {
				if strings.Contains(r.Err.Error(), "\n") {
					t.Fatalf("a multi-line error: %q", r.Err)
				}
				return nil
			}
			if r.Trace == nil || len(r.Trace.Steps) == 0 {
				t.Fatalf("an empty record: %+v", r)
			}
			return nil
		})
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("a multi-line error: %q", err)
		}
	})
}
