package explainer_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ahocorasick "github.com/BobuSumisu/aho-corasick"

	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/schemas"
)

// secretEntry is one line of testdata/redaction/secrets.jsonl: a text as a step would
// hold it, and the sensitive values in it.
type secretEntry struct {
	Form    string   `json:"form"`
	Text    string   `json:"text"`
	Secrets []string `json:"secrets"`
}

// ordinaryEntry is one line of testdata/redaction/ordinary.jsonl: text of the shapes
// sensitive values have (order numbers, hashes, versions …) that holds none.
type ordinaryEntry struct {
	Shape string `json:"shape"`
	Text  string `json:"text"`
}

func readJSONLines[T any](t testing.TB, name string) []T {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "redaction", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s:%d: %v", name, n, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// placements put a text where step data can hold it, all in one step. Each returns the
// encoded copies it planted, which must not reach the model either.
var placements = []struct {
	name  string
	place func(s *schemas.Step, x string) []string
}{
	{"description", func(s *schemas.Step, x string) []string { s.Description = "handled: " + x; return nil }},
	{"input value", func(s *schemas.Step, x string) []string { s.Input["data"] = x; return nil }},
	{"nested output value", func(s *schemas.Step, x string) []string {
		s.Output["result"] = map[string]any{"items": []any{"first", map[string]any{"note": x}}}
		return nil
	}},
	{"map key", func(s *schemas.Step, x string) []string {
		s.Metadata[x] = "seen"
		s.Metadata["labels"] = map[string]any{x: 1}
		return nil
	}},
	{"JSON in a string", func(s *schemas.Step, x string) []string {
		s.Output["body"] = mustJSON(map[string]any{"payload": x, "ok": true})
		return nil
	}},
	{"JSON in a string in a string", func(s *schemas.Step, x string) []string {
		s.Input["request"] = mustJSON(map[string]any{"envelope": mustJSON(map[string]any{"payload": x})})
		return nil
	}},
	{"base64 copy", func(s *schemas.Step, x string) []string {
		b := base64.StdEncoding.EncodeToString([]byte(x))
		s.Input["attachment"] = b
		return []string{b}
	}},
	{"URL-encoded copy", func(s *schemas.Step, x string) []string {
		q := url.QueryEscape(x)
		s.Input["url"] = "https://hooks.example.com/in?data=" + q
		return []string{q}
	}},
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// forms are the ways a value can be written in a request: as it is, escaped for JSON,
// URL-encoded and in base64.
func forms(s string) []string {
	j := mustJSON(s)
	out := []string{s, j[1 : len(j)-1], url.QueryEscape(s), url.PathEscape(s)}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString([]byte(s)))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// leakFinder finds any of a set of values in request bodies.
type leakFinder struct {
	trie  *ahocorasick.Trie
	whose []string // pattern → what it is
}

func newLeakFinder(values map[string]string) *leakFinder {
	var patterns, whose []string
	for v, w := range values {
		patterns, whose = append(patterns, v), append(whose, w)
	}
	return &leakFinder{trie: ahocorasick.NewTrieBuilder().AddStrings(patterns).Build(), whose: whose}
}

// find reports what leaked in body and in the prompt it carries, decoded from JSON.
func (f *leakFinder) find(body string) []string {
	var req struct {
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
	}
	_ = json.Unmarshal([]byte(body), &req)
	texts := []string{body}
	for _, m := range req.Messages {
		texts = append(texts, m.Content)
	}
	var out []string
	for _, t := range texts {
		for _, m := range f.trie.MatchString(t) {
			out = append(out, fmt.Sprintf("%s: …%s…", f.whose[m.Pattern()], around(t, int(m.Pos()), len(m.Match()))))
		}
	}
	return out
}

func around(s string, at, n int) string {
	return s[max(0, at-60):min(len(s), at+n+20)]
}

// Of the corpus's secrets and personal data, placed in every way step data can hold them
// and in a trace's ids, none reaches the model API in any form; the explanations still
// carry the real step ids.
func TestNoSecretReachesTheModel(t *testing.T) {
	corpus := readJSONLines[secretEntry](t, "secrets.jsonl")
	if len(corpus) < 150 {
		t.Fatalf("the corpus has %d forms, want at least 150", len(corpus))
	}
	values := map[string]string{}
	tr := &schemas.Trace{TraceID: "corpus", AgentName: "redaction-test"}
	for i, e := range corpus {
		s := &schemas.Step{StepID: fmt.Sprintf("s%d", i+1), Type: schemas.StepToolCall, Input: map[string]any{}, Output: map[string]any{}, Metadata: map[string]any{}}
		for _, p := range placements {
			for _, v := range p.place(s, e.Text) {
				values[v] = fmt.Sprintf("%s (%s)", e.Form, p.name)
			}
		}
		tr.Steps = append(tr.Steps, s)
	}
	traces := []*schemas.Trace{tr}
	// Ids and names: the trace id, the agent, a step id and a parent step id.
	for _, e := range corpus {
		id := e.Text
		traces = append(traces, &schemas.Trace{TraceID: e.Text, AgentName: e.Text, Steps: []*schemas.Step{
			{StepID: e.Text, Type: schemas.StepLLMCall, Description: "first"},
			{StepID: e.Text + "/2", Type: schemas.StepToolCall, Description: "second", ParentStepID: &id},
		}})
	}
	for _, e := range corpus {
		for _, sec := range e.Secrets {
			for _, f := range forms(sec) {
				values[f] = e.Form
			}
		}
	}

	s := newLLM(t, explains)
	cfg := config(s)
	cfg.Concurrency = 8
	results := explainAll(t, explainer.New(cfg), traces)
	redacted := 0
	for j, tr := range traces {
		r := results[j]
		for i, x := range r.Explanations {
			if x.StepID != tr.Steps[i].StepID || x.Error != "" {
				t.Fatalf("trace %.40q step %d: explanation for %.40q (error %q), want the real id %.40q", tr.TraceID, i, x.StepID, x.Error, tr.Steps[i].StepID)
			}
		}
		for _, n := range r.Usage.Redacted {
			redacted += n
		}
	}
	finder := newLeakFinder(values)
	leaks := map[string]bool{}
	for _, body := range s.Requests() {
		// Every placement of the step asked about was sent whole, none cut by the budget.
		_, cur, asked := strings.Cut(body, "CURRENT step")
		if cur, _, _ = strings.Cut(cur, "Steps before it"); asked && strings.Contains(cur, "[truncated") {
			t.Fatalf("a step was cut to fit the prompt, so not all of it was tested:\n%.2000s", cur)
		}
		for _, l := range finder.find(body) {
			leaks[l] = true
		}
	}
	for l := range leaks {
		t.Errorf("reached the model: %s", l)
	}
	t.Logf("%d forms in %d placements and in ids: %d requests, %d values redacted, %d leaks",
		len(corpus), len(placements), len(s.Requests()), redacted, len(leaks))
}

// explainAll explains the traces at once, as a batch does; the explainer's limit bounds
// the requests in flight.
func explainAll(t *testing.T, e *explainer.Explainer, traces []*schemas.Trace) []*explainer.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results := make([]*explainer.Result, len(traces))
	errs := make([]error, len(traces))
	var wg sync.WaitGroup
	for i, tr := range traces {
		wg.Go(func() { results[i], errs[i] = e.Explain(ctx, tr) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return results
}

// maxFalsePositiveRate bounds the share of ordinary texts that redaction changes. A false
// positive costs the model some context; a missed secret costs the secret. The detectors
// lean towards redacting, and this bound keeps them from blanking ordinary data: a
// regression that took every long number for a phone, or every hash for a key, passes it.
const maxFalsePositiveRate = 0.05

// Ordinary text of the shapes secrets have is sent as it is, nearly always.
func TestOrdinaryTextIsMostlyLeftAlone(t *testing.T) {
	ordinary := readJSONLines[ordinaryEntry](t, "ordinary.jsonl")
	tr := &schemas.Trace{TraceID: "ordinary", AgentName: "redaction-test"}
	for i, o := range ordinary {
		tr.Steps = append(tr.Steps, &schemas.Step{StepID: fmt.Sprintf("o%d", i+1), Type: schemas.StepToolCall, Description: "read", Input: map[string]any{"text": o.Text}})
	}
	s := newLLM(t, explains)
	cfg := config(s)
	cfg.Concurrency = 8
	explainAll(t, explainer.New(cfg), []*schemas.Trace{tr})
	prompts := map[string]string{} // step id → the prompt that asked about it
	for _, body := range s.Requests() {
		var req struct {
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			t.Fatal(err)
		}
		p := req.Messages[len(req.Messages)-1].Content
		if i := strings.Index(p, "(step_id "); i >= 0 {
			prompts[p[i+len("(step_id "):][:strings.IndexByte(p[i:], ')')-len("(step_id ")]] = p
		}
	}
	changed := 0
	for i, o := range ordinary {
		p, ok := prompts[fmt.Sprintf("o%d", i+1)]
		if !ok {
			t.Fatalf("no prompt asked about step o%d", i+1)
		}
		if !strings.Contains(p, compactJSON(map[string]any{"text": o.Text})) {
			changed++
			t.Logf("changed (%s): %q", o.Shape, o.Text)
		}
	}
	rate := float64(changed) / float64(len(ordinary))
	t.Logf("false positives: %d of %d ordinary texts (%.1f%%)", changed, len(ordinary), 100*rate)
	if rate > maxFalsePositiveRate {
		t.Fatalf("%.1f%% of ordinary texts were changed, more than %.0f%%", 100*rate, 100*maxFalsePositiveRate)
	}
}

func compactJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSpace(b.String())
}
