package reporter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// The streamed audit.json is byte for byte what encoding the whole audit at once writes
// (pyjson, indented by two spaces), for audits of realistic nesting.
func TestStreamedAuditJSONEqualsEncodingJSON(t *testing.T) {
	g := tracegen.New(tracegen.Options{Steps: 40, Seed: 3, BadRate: 0.2})
	for i := range 20 {
		r := result()
		r.Trace = g.Trace()
		r.Explanations = []schemas.StepExplanation{{StepID: "s1", Summary: "a <b> & \"c\"", Alternatives: []string{"x"}}}
		r.Summary = &schemas.TraceSummary{Overview: "o\u2028\n\t"}
		if i%2 == 0 {
			r.Info = nil
		}
		r.Normalize()
		r.Trace.Steps[0].Input["numbers"] = []any{5.0, math.Inf(1), math.NaN(), 1 << 62, -0.0}
		var want bytes.Buffer
		if err := pyjson.Encode(&want, r, "  "); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := EncodeJSON(&got, r); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("audit %d: streamed JSON differs from the whole audit's: %s", i, firstDiff(got.String(), want.String()))
		}
	}
}

func firstDiff(a, b string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			lo := max(0, i-80)
			return fmt.Sprintf("at byte %d: got …%s… want …%s…", i, a[lo:min(len(a), i+80)], b[lo:min(len(b), i+80)])
		}
	}
	return "lengths differ"
}

// A value nested ten thousand levels deep makes an audit.json of a size linear in the
// trace's, which reads back as the same value.
func TestDeepNestingStaysLinear(t *testing.T) {
	const depth = 4990 // an object and an array a level: ten thousand levels with the audit around
	var src strings.Builder
	for range depth {
		src.WriteString(`{"a":[`)
	}
	src.WriteString(`1`)
	for range depth {
		src.WriteString(`]}`)
	}
	var deep any
	d := json.NewDecoder(strings.NewReader(src.String()))
	if err := d.Decode(&deep); err != nil {
		t.Fatal(err)
	}
	r := result()
	r.Trace.Steps[0].Input = map[string]any{"deep": deep}
	dir := t.TempDir()
	js := filepath.Join(dir, "audit.json")
	if err := WriteAudit(r, Dest{Markdown: filepath.Join(dir, "report.md"), JSON: js}); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(js)
	if err != nil {
		t.Fatal(err)
	}
	if limit := int64(4*src.Len() + 64<<10); info.Size() > limit {
		t.Fatalf("audit.json is %d bytes for a %d-byte value: over %d", info.Size(), src.Len(), limit)
	}
	raw, _ := os.ReadFile(js)
	var back schemas.AuditResult
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(back.Trace.Steps[0].Input["deep"])
	if string(a) != src.String() {
		t.Fatal("the deep value did not read back the same")
	}
}

// Reports are written to what a path names without replacing what is not a regular file:
// a pipe is written in place, a link is followed (the link stays), a link to nothing and a
// directory are refused, and "-" is stdout.
func TestWriteToWhatAPathNames(t *testing.T) {
	dir := t.TempDir()
	data := []byte("report\n")

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	read := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		read <- b
	}()
	if err := WriteFile(fifo, data); err != nil {
		t.Fatal(err)
	}
	if got := <-read; !bytes.Equal(got, data) {
		t.Fatalf("the pipe's reader got %q", got)
	}
	if info, err := os.Lstat(fifo); err != nil || info.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the pipe was replaced: %v %v", info.Mode(), err)
	}

	real := filepath.Join(dir, "real.md")
	if err := os.WriteFile(real, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.md")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, data); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the link was replaced")
	}
	if got, _ := os.ReadFile(real); !bytes.Equal(got, data) {
		t.Fatalf("the link's target holds %q", got)
	}
	if info, _ := os.Stat(real); info.Mode().Perm() != 0o600 {
		t.Fatalf("the target's mode became %v", info.Mode().Perm())
	}

	dangling := filepath.Join(dir, "dangling.md")
	if err := os.Symlink(filepath.Join(dir, "missing", "x.md"), dangling); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dangling, data); err == nil || !strings.Contains(err.Error(), "symbolic link to nothing") {
		t.Fatalf("a link to nothing: %v", err)
	}
	if err := WriteFile(dir, data); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("a directory: %v", err)
	}

	var stdout bytes.Buffer
	r := result()
	if err := WriteAudit(r, Dest{Markdown: "-", JSON: "-", Stdout: &stdout}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "# Audit Report: bot") || !strings.Contains(stdout.String(), `"trace_id": "t1"`) {
		t.Fatalf("stdout: %q", stdout.String())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Fatalf("left behind: %v", entries)
	}
}

// Every valid id makes one safe, bounded file name, and different ids different names.
func TestPathTokensAreSafeBoundedAndDistinct(t *testing.T) {
	long := strings.Repeat("x", schemas.MaxIDLength)
	ids := []string{"", "s1", "a.b", "..", strings.Repeat(".", 100), "../../etc/passwd", long, long[:255] + "y",
		strings.Repeat("é", schemas.MaxIDLength/2), strings.Repeat("~", 200), strings.Repeat("a/", 128)}
	seen := map[string]string{}
	for _, id := range ids {
		for _, name := range []string{PathToken(id), "step_" + fileName(id) + ".txt"} {
			if len(name) > 160 || strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." {
				t.Errorf("%.30q: unsafe or long file name %q (%d bytes)", id, name, len(name))
			}
		}
		tok := PathToken(id)
		if other, dup := seen[tok]; dup {
			t.Errorf("%.30q and %.30q share the name %q", id, other, tok)
		}
		seen[tok] = id
		if err := os.WriteFile(filepath.Join(t.TempDir(), "step_"+fileName(id)+".txt"), nil, 0o644); err != nil {
			t.Errorf("%.30q: %v", id, err)
		}
	}
	if PathToken("s1") != "s1" || PathToken("a.b") != "a~2eb" {
		t.Error("short ids keep their subject token")
	}
}
