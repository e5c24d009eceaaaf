package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/internal/analytics"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
)

// The analytics commands answer the seeded scenario's questions, in every output format,
// with the documented exit codes.
func TestAnalyticsCommands(t *testing.T) {
	srv := chtest.Start(t)
	dsn := srv.DSN("troy")
	if r := troyctl(t, "migrate", "--clickhouse", dsn); r.code != 0 || !strings.Contains(r.stdout, "applied  0001_tables.sql") {
		t.Fatalf("migrate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store, err := warehouse.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := chtest.Seed(ctx, store, chtest.Scenario(time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC))); err != nil {
		t.Fatal(err)
	}
	t.Setenv(warehouse.EnvDSN, dsn) // the commands below take the DSN from the environment

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		check  func(t *testing.T, stdout string)
	}{
		{"trends text", []string{"trends", "--since", "2026-06-07", "--until", "2026-06-15", "--agent", "stable"}, 0,
			[]string{"Violations per day by rule", "2026-06-10  0       0", "Top rules", "no-sql  high      56          56", "Risk scores of 280 traces", "never fired", "no-exfil"}, nil},
		{"trends json", []string{"trends", "--since", "2026-06-07", "--until", "2026-06-15", "--agent", "stable", "--json"}, 0, nil, func(t *testing.T, out string) {
			var tr analytics.Trends
			if err := json.Unmarshal([]byte(out), &tr); err != nil || len(tr.Series) != 1 || tr.Series[0].Total != 56 {
				t.Fatalf("%v %+v", err, tr.Series)
			}
		}},
		{"trends csv", []string{"trends", "--since", "2026-06-07", "--until", "2026-06-15", "--agent", "stable", "--csv"}, 0,
			[]string{"bucket,key,count\n2026-06-07T00:00:00Z,no-sql,8\n", "2026-06-10T00:00:00Z,no-sql,0\n"}, func(t *testing.T, out string) {
				if n := strings.Count(out, "\n"); n != 9 {
					t.Fatalf("%d lines", n)
				}
			}},
		{"no drift", []string{"drift", "--agent", "stable", "--at", "2026-06-15", "--no-store"}, 0, []string{"No drift: agent stable"}, nil},
		{"drift", []string{"drift", "--agent", "shifty", "--at", "2026-06-15", "--json"}, exitFound, nil, func(t *testing.T, out string) {
			var d analytics.Drift
			if err := json.Unmarshal([]byte(out), &d); err != nil || !d.Drifted || len(d.Findings) == 0 || d.Findings[0].Kind != "novel_tool" {
				t.Fatalf("%v %+v", err, d)
			}
		}},
		{"drift, not enough data", []string{"drift", "--agent", "stable", "--at", "2020-01-01", "--no-store"}, exitNotEnoughData,
			[]string{"Not enough data: agent stable has 0 traces in the baseline and 0 in the window (0 and 0 tool calls); need 30 each (--min-samples)"}, nil},
		{"drift json, not enough data", []string{"drift", "--agent", "stable", "--at", "2020-01-01", "--no-store", "--json"}, exitNotEnoughData, nil, func(t *testing.T, out string) {
			var d analytics.Drift
			if err := json.Unmarshal([]byte(out), &d); err != nil || d.EnoughData || d.Drifted || d.Samples.Needed != 30 {
				t.Fatalf("%v %+v", err, d)
			}
		}},
		{"regression", []string{"regress", "--baseline", "version=1.0", "--candidate", "version=1.1"}, exitFound, []string{"version=1.1 vs version=1.0: REGRESSION", "no-sql fires in 50.0% of traces, up from 10.0%"}, nil},
		{"no regression", []string{"regress", "--baseline", "version=1.0", "--candidate", "version=1.2", "--csv"}, 0, []string{"rule,baseline,candidate,z,adjusted p,change\nno-sql,10.0%,10.0%,0,1,\n"}, nil},
		{"sql", []string{"sql", "SELECT agent, count() AS traces FROM traces FINAL GROUP BY agent ORDER BY agent", "--json"}, 0, nil, func(t *testing.T, out string) {
			var rows []map[string]any
			if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 3 || rows[0]["agent"] != "bot" || rows[0]["traces"] != float64(180) {
				t.Fatalf("%v %v", err, rows)
			}
		}},
		{"sql text", []string{"sql", "SELECT rule_id, severity FROM rules FINAL ORDER BY rule_id"}, 0, []string{"rule_id   severity", "no-exfil  critical"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := troyctl(t, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, tt.code, r.stdout, r.stderr)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(r.stdout, want) {
					t.Fatalf("stdout lacks %q:\n%s", want, r.stdout)
				}
			}
			if tt.check != nil {
				tt.check(t, r.stdout)
			}
		})
	}

	// A range without traces says where the stored ones are, on stderr, in every format.
	for _, format := range [][]string{nil, {"--json"}, {"--csv"}} {
		r := troyctl(t, append([]string{"trends", "--since", "2020-01-01", "--until", "2020-01-08"}, format...)...)
		want := "troyctl: no traces between 2020-01-01T00:00:00Z and 2020-01-08T00:00:00Z; the stored traces span 2026-"
		if r.code != 0 || !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("trends %s: exit %d, stderr %q, want %q…", format, r.code, r.stderr, want)
		}
	}
	if r := troyctl(t, "trends", "--since", "2026-06-07", "--until", "2026-06-15"); r.stderr != "" {
		t.Fatalf("trends with traces in the range: stderr %q", r.stderr)
	}

	// Read-only: the server refuses writes, and the table is still there.
	r := troyctl(t, "sql", "DROP TABLE traces")
	if r.code != exitError || !strings.Contains(r.stderr, "readonly") {
		t.Fatalf("DROP: exit %d: %s", r.code, r.stderr)
	}
	if r := troyctl(t, "sql", "SELECT count() FROM traces"); r.code != 0 {
		t.Fatalf("traces is gone: %s", r.stderr)
	}
}

func TestAnalyticsCommandErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"trends"}, "no ClickHouse: pass --clickhouse"},
		{[]string{"trends", "--since", "yesterday"}, "--since: time \"yesterday\": expected RFC 3339"},
		{[]string{"trends", "--interval", "week"}, `interval "week": expected hour or day`},
		{[]string{"drift"}, `required flag(s) "agent" not set`},
		{[]string{"drift", "--agent", "a", "--window", "0d"}, "--window: duration \"0d\""},
		{[]string{"regress", "--baseline", "colour=red", "--candidate", "version=2"}, "--baseline: selector \"colour=red\""},
		{[]string{"migrate", "--clickhouse", "127.0.0.1:1"}, "connection refused"},
	}
	for _, tt := range tests {
		r := troyctl(t, tt.args...)
		if r.code != exitError || !strings.Contains(r.stderr, tt.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q, want one line with %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// --since and --until read as one range; a bad one is named in the error.
func TestTimeRange(t *testing.T) {
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		since, until string
		from, to     time.Time // zero: near now
		err          string
	}{
		{since: "2026-05-01", until: "2026-06-01", from: at, to: at.AddDate(0, 1, 0)},
		{since: "2026-05-01T00:00:00Z", until: "now", from: at},
		{since: "yesterday", until: "now", err: `--since: time "yesterday"`},
		{since: "7d", until: "tomorrow", err: `--until: time "tomorrow"`},
	}
	for _, tt := range tests {
		r, err := timeRange(tt.since, tt.until)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s..%s: %v, want %q", tt.since, tt.until, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s..%s: %v", tt.since, tt.until, err)
		}
		if !r.From.Equal(tt.from) || !tt.to.IsZero() && !r.To.Equal(tt.to) || tt.to.IsZero() && time.Since(r.To).Abs() > time.Minute {
			t.Errorf("%s..%s: %s", tt.since, tt.until, r)
		}
	}
}
