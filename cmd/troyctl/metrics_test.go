package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/troy-audit/troy/sdk/llmtest"
	"github.com/troy-audit/troy/sdk/servetest"
)

// scrape reads a /metrics page: its families, and the lint's problems with it (what
// promtool check metrics reports).
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, []promlint.Problem) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("lint %s: %v", url, err)
	}
	return mfs, problems
}

// sample is the value of a family's series with the labels given (others ignored);
// -1 when there is none.
func sample(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// A real serve's /metrics after real traffic (guard checks through the HTTP gateway in
// each mode, a trace ended and explained by a scripted model) holds the standard
// collectors, the build's info and the operations counters with the values the traffic
// makes, and passes the lint.
func TestServeMetrics(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("metrics-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	model := scriptedModel(t, llmtest.Explains)
	httpPort, metricsPort := servetest.FreePort(t), servetest.FreePort(t)
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	p := startServe(t, "--data-dir", filepath.Join(dir, "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", servetest.FreePort(t)),
		"--policy", example(t, "policy.json"), "--idle-timeout", "0", "--metrics", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--http-tokens", tokens, "--base-url", model.URL+"/v1", "--api-key", "test")
	call := func(method, path, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer metrics-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	escalation := `"step": {"action": "bash", "metadata": {"permission_level": "admin"}}`
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"session": "s1", "agent": "a", ` + escalation + `}`, 200},                            // blocked
		{`{"session": "s1", "agent": "a", "mode": "monitor", ` + escalation + `}`, 200},         // flagged
		{`{"session": "s1", "agent": "a", "step": {"action": "ls"}}`, 200},                      // allowed
		{`{"session": "s1", "agent": "a", "mode": "sometimes", "step": {"action": "ls"}}`, 400}, // error
	} {
		if got := call("POST", "/v1/guard/check", tc.body); got != tc.want {
			t.Fatalf("check %s: %d, want %d\n%s", tc.body, got, tc.want, p.log())
		}
	}
	if got := call("GET", "/v1/no/such/thing", ""); got != 404 {
		t.Fatalf("unknown path: %d", got)
	}
	if got := call("POST", "/v1/traces/s1/end", `{"agent": "a"}`); got != 202 {
		t.Fatalf("end: %d\n%s", got, p.log())
	}

	var mfs map[string]*dto.MetricFamily
	var problems []promlint.Problem
	deadline := time.Now().Add(30 * time.Second)
	for {
		mfs, problems = scrape(t, metrics)
		if sample(mfs, "troy_violations_total", "rule", "privileged-escalation-guard", "severity", "critical") == 2 &&
			sample(mfs, "troy_llm_calls_total", "outcome", "ok") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no violations or model calls counted in 30s: violations %v, calls %v\n%s",
				sample(mfs, "troy_violations_total"), sample(mfs, "troy_llm_calls_total", "outcome", "ok"), p.log())
		}
		time.Sleep(50 * time.Millisecond) // polling /metrics, bounded by the deadline
	}
	if len(problems) > 0 {
		t.Errorf("lint: %+v", problems)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64 // -2: present, any value
	}{
		{"troy_guard_decisions_total", []string{"outcome", "blocked"}, 1},
		{"troy_guard_decisions_total", []string{"outcome", "flagged"}, 1},
		{"troy_guard_decisions_total", []string{"outcome", "allowed"}, 1},
		{"troy_guard_decisions_total", []string{"outcome", "error"}, 1},
		{"troy_guard_check_seconds", nil, 4},
		{"troy_http_requests_total", []string{"route", "POST /v1/guard/check", "code", "200"}, 3},
		{"troy_http_requests_total", []string{"route", "POST /v1/guard/check", "code", "400"}, 1},
		{"troy_http_requests_total", []string{"route", "POST /v1/traces/{id}/end", "code", "202"}, 1},
		{"troy_http_requests_total", []string{"route", "unmatched", "code", "404"}, 1},
		{"troy_llm_calls_total", []string{"outcome", "error"}, 0},
		{"troy_rule_errors_total", []string{"component", "guard", "outcome", "blocked"}, 0}, // known series start at zero
		{"troy_rule_errors_total", []string{"component", "evaluator", "outcome", "recorded"}, 0},
		{"troy_build_info", []string{"go_version", runtime.Version()}, 1},
		{"go_goroutines", nil, -2},
		{"process_cpu_seconds_total", nil, -2},
		{"process_resident_memory_bytes", nil, -2},
	} {
		got := sample(mfs, tc.name, tc.labels...)
		if tc.want == -2 && got < 0 || tc.want != -2 && got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	for _, kind := range []string{"prompt", "completion"} {
		if got := sample(mfs, "troy_llm_tokens_total", "kind", kind); got < 1 {
			t.Errorf("troy_llm_tokens_total{kind=%q} = %v, want the tokens the model's answers cost", kind, got)
		}
	}
	for _, name := range []string{"troy_http_requests_total", "troy_violations_total"} {
		for _, m := range mfs[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), "s1") {
					t.Errorf("%s has a raw path or id as a label: %s", name, m)
				}
			}
		}
	}
}
