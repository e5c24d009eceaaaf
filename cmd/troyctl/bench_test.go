package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/sdk/servetest"
)

// bench's JSON names the unit of every latency (nanoseconds, _ns), and counts checks with
// violations under the words its text uses; the text says the same.
func TestBenchOutputNamesItsUnits(t *testing.T) {
	port := servetest.FreePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	otlp := servetest.FreePort(t)
	startServe(t, "--data-dir", t.TempDir(), "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--policy", "minimal", "--otlp", fmt.Sprintf("127.0.0.1:%d", otlp))
	latencyKeys := []string{"max_ns", "p50_ns", "p90_ns", "p999_ns", "p99_ns"}
	tests := []struct {
		name       string
		args       []string
		latency    string
		keys, text []string
		measured   bool // a short pipeline run may score a trace before its send time is noted
	}{
		{"guard", []string{"bench", "guard", "--nats", url, "--duration", "300ms"}, "latency",
			[]string{"checks", "checks_per_second", "concurrency", "errors", "latency", "seconds", "target_rate", "with_violations"},
			[]string{" with violations\n", "latency: p50 "}, true},
		{"pipeline", []string{"bench", "pipeline", "--nats", url, "--steps", "40", "--per-trace", "20", "--timeout", "1m"}, "trace_latency",
			[]string{"publish_seconds", "published_per_second", "seconds", "steps", "steps_per_second", "steps_scored", "trace_latency", "traces"},
			[]string{"pipeline: 40 steps (2 traces)", "trace end to score: p50 "}, false},
		{"pipeline at a rate", []string{"bench", "pipeline", "--nats", url, "--steps", "40", "--per-trace", "20", "--rate", "400", "--timeout", "1m"}, "trace_latency",
			[]string{"publish_seconds", "published_per_second", "seconds", "steps", "steps_per_second", "steps_scored", "trace_latency", "traces"},
			[]string{"pipeline: 40 steps (2 traces)", "trace end to score: p50 "}, false},
		{"otlp", []string{"bench", "otlp", "--otlp", fmt.Sprintf("http://127.0.0.1:%d/v1/traces", otlp), "--nats", url, "--spans", "40", "--per-trace", "20", "--timeout", "1m"}, "trace_latency",
			[]string{"retries", "seconds", "send_seconds", "sent_spans_per_second", "spans", "spans_per_second", "steps", "steps_per_second", "trace_latency", "traces"},
			[]string{"otlp: 40 spans (38 steps, 2 traces)", "trace exported to score: p50 "}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := troyctl(t, append(tt.args, "--json")...)
			var out map[string]json.RawMessage
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
				t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
			}
			keys := slices.Sorted(maps.Keys(out))
			var lat map[string]int64
			if !slices.Equal(keys, tt.keys) || json.Unmarshal(out[tt.latency], &lat) != nil {
				t.Fatalf("keys %v, want %v:\n%s", keys, tt.keys, r.stdout)
			}
			var latKeys []string
			for k, v := range lat {
				if v < 0 || tt.measured && v == 0 {
					t.Errorf("%s.%s = %d", tt.latency, k, v)
				}
				latKeys = append(latKeys, k)
			}
			if slices.Sort(latKeys); !slices.Equal(latKeys, latencyKeys) {
				t.Fatalf("%s keys %v, want %v", tt.latency, latKeys, latencyKeys)
			}
			r = troyctl(t, tt.args...)
			for _, want := range tt.text {
				if r.code != 0 || !strings.Contains(r.stdout, want) {
					t.Fatalf("text lacks %q (exit %d):\n%s%s", want, r.code, r.stdout, r.stderr)
				}
			}
		})
	}
}
