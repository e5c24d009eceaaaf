package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodTrace = `{"trace_id": "t1", "agent_name": "bot", "steps": [
  {"step_id": "s1", "type": "tool_call", "description": "search", "input": {"q": "x", "n": 3, "f": 1.5}, "output": {}},
  {"step_id": "s2", "type": "llm_call", "description": "think"}
], "metadata": {"environment": "prod"}}`

func TestDecodeTraceAcceptsTheSeedFormat(t *testing.T) {
	tr, err := DecodeTrace([]byte(goodTrace))
	if err != nil {
		t.Fatal(err)
	}
	if tr.TraceID != "t1" || tr.AgentName != "bot" || len(tr.Steps) != 2 {
		t.Fatalf("unexpected trace: %+v", tr)
	}
	s := tr.Steps[0]
	if s.Input["n"] != 3 || s.Input["f"] != 1.5 {
		t.Errorf("numbers should decode as int and float64, got %T %T", s.Input["n"], s.Input["f"])
	}
	if s2 := tr.Steps[1]; s2.Input == nil || s2.Output == nil || s2.Metadata == nil {
		t.Errorf("missing input/output/metadata should default to empty objects: %+v", s2)
	}
	if s.Timestamp != nil || s.ParentStepID != nil {
		t.Errorf("absent optional fields should stay nil")
	}
}

func TestDecodeTraceErrorsNameThePlaceAndWhatWasExpected(t *testing.T) {
	step := func(fields string) string {
		return `{"trace_id": "t", "agent_name": "a", "steps": [{"step_id": "s0", "type": "llm_call", "description": "d"}, ` + fields + `]}`
	}
	tests := []struct {
		name, doc, want string
	}{
		{"unknown step type", step(`{"step_id": "s1", "type": "tool", "description": "d"}`),
			`steps[1].type: "tool" is not one of llm_call, tool_call, decision, observation`},
		{"missing description", step(`{"step_id": "s1", "type": "tool_call"}`),
			`steps[1].description: required field is missing`},
		{"wrong type", step(`{"step_id": "s1", "type": "tool_call", "description": 5}`),
			`steps[1].description: expected a string, got number 5`},
		{"input not an object", step(`{"step_id": "s1", "type": "tool_call", "description": "d", "input": "rm -rf"}`),
			`steps[1].input: expected an object, got string "rm -rf"`},
		{"empty step id", step(`{"step_id": "", "type": "tool_call", "description": "d"}`),
			`steps[1].step_id: expected a non-empty string`},
		{"step not an object", step(`[1, 2]`), `steps[1]: expected a step object, got array`},
		{"timestamp wrong type", step(`{"step_id": "s1", "type": "tool_call", "description": "d", "timestamp": 12}`),
			`steps[1].timestamp: expected a string or null, got number 12`},
		{"empty steps", `{"trace_id": "t", "agent_name": "a", "steps": []}`, `steps: expected at least one step, got none`},
		{"missing steps", `{"trace_id": "t", "agent_name": "a"}`, `steps: required field is missing`},
		{"missing trace id", `{"agent_name": "a", "steps": [{"step_id": "s", "type": "llm_call", "description": "d"}]}`, `trace_id: required field is missing`},
		{"metadata wrong type", `{"trace_id": "t", "agent_name": "a", "metadata": [], "steps": [{"step_id": "s", "type": "llm_call", "description": "d"}]}`, `metadata: expected an object, got array`},
		{"not an object", `[{"trace_id": "t"}]`, `expected a trace object, got array`},
		{"syntax error", "{\"trace_id\": \"t\",\n  \"agent_name\": }", `line 2, column 17: invalid JSON: invalid character '}' looking for beginning of value`},
		{"truncated", `{"trace_id": "t"`, `line 1, column 17: invalid JSON: unexpected end of JSON input`},
		{"trailing data", goodTrace + ` {}`, `unexpected data after the trace object`},
		{"empty", ``, `empty document: expected a trace object`},
		{"invalid UTF-8", "{\"trace_id\": \"t\xff\"}", `line 1, column 16: invalid UTF-8 (byte 0xff at offset 15)`},
		{"long trace id", `{"trace_id": "` + strings.Repeat("z", 4100) + `", "agent_name": "a", "steps": [{"step_id": "s", "type": "llm_call", "description": "d"}]}`,
			`trace_id: 4100 bytes long, over the 256-byte limit for ids`},
		{"long agent name", `{"trace_id": "t", "agent_name": "` + strings.Repeat("é", 200) + `", "steps": [{"step_id": "s", "type": "llm_call", "description": "d"}]}`,
			`agent_name: 400 bytes long, over the 256-byte limit for ids`},
		{"long step id", step(`{"step_id": "` + strings.Repeat("s", 300) + `", "type": "tool_call", "description": "d"}`),
			`steps[1].step_id: 300 bytes long, over the 256-byte limit for ids`},
		{"control character in a step id", step(`{"step_id": "s\u001b[2J", "type": "tool_call", "description": "d"}`),
			`steps[1].step_id: holds the control character U+001B; ids are printable text`},
		{"newline in a parent step id", step(`{"step_id": "s1", "type": "tool_call", "description": "d", "parent_step_id": "s0\nforged"}`),
			`steps[1].parent_step_id: holds the control character U+000A`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeTrace([]byte(tc.doc))
			if err == nil {
				t.Fatalf("expected an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error should be one line: %q", err)
			}
		})
	}
}

func TestDecodeTraceSkipsAByteOrderMark(t *testing.T) {
	if _, err := DecodeTrace(append([]byte("\xef\xbb\xbf"), goodTrace...)); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gz(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compact(s string) string { return strings.ReplaceAll(s, "\n", "") }

func TestReadFileFormats(t *testing.T) {
	dir := t.TempDir()
	line := compact(goodTrace)
	lines := line + "\n\n" + `{"trace_id": "bad"}` + "\n" + strings.Replace(line, `"t1"`, `"t2"`, 1) + "\n"
	tests := []struct {
		name      string
		data      []byte
		wantIDs   []string
		wantBad   []string // errors handed to fn
		wantFatal string   // error returned
	}{
		{"a.json", []byte(goodTrace), []string{"t1"}, nil, ""},
		{"a.json.gz", gz(t, []byte(goodTrace)), []string{"t1"}, nil, ""},
		{"many.jsonl", []byte(lines), []string{"t1", "t2"}, []string{"many.jsonl:3: agent_name: required field is missing"}, ""},
		{"many.jsonl.gz", gz(t, []byte(lines)), []string{"t1", "t2"}, []string{"many.jsonl.gz:3: agent_name: required field is missing"}, ""},
		{"bad.json.gz", []byte(goodTrace), nil, nil, "bad.json.gz: not a gzip file"},
		{"bad.json", []byte(`{"trace_id": 1}`), nil, []string{"bad.json: trace_id: expected a string, got number 1"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, dir, tc.name, tc.data)
			var ids, bad []string
			err := ReadFile(context.Background(), path, Options{}, func(r Record) error {
				if r.Err != nil {
					bad = append(bad, strings.TrimPrefix(r.Err.Error(), dir+string(filepath.Separator)))
					return nil
				}
				ids = append(ids, r.Trace.TraceID)
				return nil
			})
			if tc.wantFatal != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantFatal) {
					t.Fatalf("error %v, want %q", err, tc.wantFatal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(ids, ",") != strings.Join(tc.wantIDs, ",") {
				t.Errorf("traces %v, want %v", ids, tc.wantIDs)
			}
			if strings.Join(bad, "|") != strings.Join(tc.wantBad, "|") {
				t.Errorf("bad records %q, want %q", bad, tc.wantBad)
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	dir := t.TempDir()
	big := write(t, dir, "big.json", []byte(goodTrace))
	_, err := LoadTrace(context.Background(), big, Options{MaxSize: 100})
	if err == nil || !strings.Contains(err.Error(), "over the 100 bytes limit (raise it with --max-size)") {
		t.Fatalf("got %v", err)
	}
	gzBig := write(t, dir, "big.json.gz", gz(t, []byte(goodTrace)))
	if _, err := LoadTrace(context.Background(), gzBig, Options{MaxSize: 100}); err == nil || !strings.Contains(err.Error(), "over the 100 bytes limit") {
		t.Fatalf("a compressed file is limited by its decompressed size, got %v", err)
	}
	// In a .jsonl file the limit applies per line, and an overlong line does not stop the rest.
	short := `{"trace_id": "s", "agent_name": "a", "steps": [{"step_id": "s", "type": "llm_call", "description": "d"}]}`
	jl := write(t, dir, "mixed.jsonl", []byte(compact(goodTrace)+"\n"+short+"\n"))
	var ids []string
	var bad []error
	err = ReadFile(context.Background(), jl, Options{MaxSize: int64(len(short))}, func(r Record) error {
		if r.Err != nil {
			bad = append(bad, r.Err)
		} else {
			ids = append(ids, r.Trace.TraceID)
		}
		return nil
	})
	if err != nil || len(ids) != 1 || ids[0] != "s" || len(bad) != 1 || !strings.Contains(bad[0].Error(), "mixed.jsonl:1: trace is over the") {
		t.Fatalf("ids %v bad %v err %v", ids, bad, err)
	}
}

func TestLoadTraceWantsExactlyOne(t *testing.T) {
	dir := t.TempDir()
	two := write(t, dir, "two.jsonl", []byte(compact(goodTrace)+"\n"+compact(goodTrace)+"\n"))
	if _, err := LoadTrace(context.Background(), two, Options{}); err == nil || !strings.Contains(err.Error(), "holds 2 traces") {
		t.Fatalf("got %v", err)
	}
	if _, err := LoadTrace(context.Background(), filepath.Join(dir, "missing.json"), Options{}); err == nil || err.Error() != filepath.Join(dir, "missing.json")+": no such file or directory" {
		t.Fatalf("got %v", err)
	}
	if _, err := LoadTrace(context.Background(), dir, Options{}); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("got %v", err)
	}
}

func TestFilesListsTraceFilesSorted(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.jsonl", "a.json", "c.json.gz", "d.jsonl.gz", "notes.txt", "e.JSON"} {
		write(t, dir, n, []byte("{}"))
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := fileNames(t, dir); got != "a.json,b.jsonl,c.json.gz,d.jsonl.gz,e.JSON" {
		t.Fatalf("got %s", got)
	}
	for in, want := range map[string]string{"x/a.jsonl.gz": "a", "a.json": "a", "a.b.JSON.GZ": "a.b", "notes": "notes"} {
		if got := Stem(in); got != want {
			t.Errorf("Stem(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadFileStopsWhenTheCallbackFails(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "many.jsonl", []byte(compact(goodTrace)+"\n"+compact(goodTrace)+"\n"))
	stop := errors.New("stop")
	n := 0
	err := ReadFile(context.Background(), p, Options{}, func(Record) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err %v after %d records", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ReadFile(ctx, p, Options{}, func(Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled read should stop, got %v", err)
	}
}

// Files the Python tool's json reads load: NaN, Infinity and -Infinity wherever values go,
// and a step_id used more than once (every step is kept, in order).
func TestDecodeTracePythonJSON(t *testing.T) {
	tr, err := DecodeTrace([]byte(`{"trace_id": "t", "agent_name": "a",
		"metadata": {"budget": Infinity, "floor": -Infinity, "ratio": NaN, "list": [NaN, 1]},
		"steps": [
			{"step_id": "s", "type": "tool_call", "description": "a", "input": {"x": NaN}, "output": {"y": Infinity}, "metadata": {"z": -Infinity}},
			{"step_id": "s", "type": "llm_call", "description": "b", "input": {"nested": {"deep": [Infinity]}}},
			{"step_id": "s", "type": "decision", "description": "c"}
		]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Steps) != 3 || tr.Steps[0].Description != "a" || tr.Steps[2].Description != "c" || tr.Steps[2].StepID != "s" {
		t.Fatalf("steps: %+v", tr.Steps)
	}
	checks := []struct {
		name string
		v    any
		ok   func(float64) bool
	}{
		{"metadata.budget", tr.Metadata["budget"], func(f float64) bool { return math.IsInf(f, 1) }},
		{"metadata.floor", tr.Metadata["floor"], func(f float64) bool { return math.IsInf(f, -1) }},
		{"metadata.ratio", tr.Metadata["ratio"], math.IsNaN},
		{"metadata.list[0]", tr.Metadata["list"].([]any)[0], math.IsNaN},
		{"steps[0].input.x", tr.Steps[0].Input["x"], math.IsNaN},
		{"steps[0].output.y", tr.Steps[0].Output["y"], func(f float64) bool { return math.IsInf(f, 1) }},
		{"steps[0].metadata.z", tr.Steps[0].Metadata["z"], func(f float64) bool { return math.IsInf(f, -1) }},
		{"steps[1].input.nested.deep[0]", tr.Steps[1].Input["nested"].(map[string]any)["deep"].([]any)[0], func(f float64) bool { return math.IsInf(f, 1) }},
	}
	for _, c := range checks {
		f, isFloat := c.v.(float64)
		if !isFloat || !c.ok(f) {
			t.Errorf("%s: %#v", c.name, c.v)
		}
	}
}

// Symbolic links to trace files are followed, wherever the file is; links to directories
// (a cycle among them too) are not entered; a broken link or a loop of links is listed,
// so that reading it says what is wrong rather than leaving it out in silence.
func TestFilesFollowsLinksToFiles(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	write(t, elsewhere, "real.json", []byte("{}"))
	write(t, dir, "a.json", []byte("{}"))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"b.json":       filepath.Join(elsewhere, "real.json"), // a file elsewhere
		"c.jsonl":      "a.json",                              // a file beside it, relative
		"d.json":       filepath.Join(dir, "sub"),             // a directory
		"sub/up.json":  "..",                                  // a directory cycle
		"e.json":       "missing.json",                        // broken
		"f.json":       "f.json",                              // a loop
		"notes.txt":    "a.json",                              // not a trace file name
		"g.json.gz":    filepath.Join(elsewhere, "real.json"),
		"h.json.other": "a.json",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if got := fileNames(t, dir); got != "a.json,b.json,c.jsonl,e.json,f.json,g.json.gz" {
		t.Fatalf("got %s", got)
	}
}

// fileNames is what Files lists in dir, by base name, comma-separated.
func fileNames(t *testing.T, dir string) string {
	t.Helper()
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	return strings.Join(names, ",")
}
