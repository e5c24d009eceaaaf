package analytics_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/internal/analytics"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
)

var at = time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)

func seeded(t *testing.T) *warehouse.Store {
	t.Helper()
	srv := chtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, _, err := warehouse.Migrate(ctx, srv.DSN("troy"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := chtest.Seed(ctx, s, chtest.Scenario(at)); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAnalytics(t *testing.T) {
	s := seeded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	day := 24 * time.Hour

	t.Run("trends", func(t *testing.T) {
		tr, err := analytics.RunTrends(ctx, s.Conn(), analytics.TrendsOptions{Range: analytics.Range{From: at.Add(-8 * day), To: at}, Agent: "stable"})
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.Series) != 1 || tr.Series[0].Key != "no-sql" || tr.Series[0].Total != 56 || len(tr.Series[0].Counts) != 8 {
			t.Fatalf("series %+v", tr.Series)
		}
		for i, b := range tr.Series[0].Counts {
			want := uint64(8)
			if i == 3 {
				want = 0 // no traces that day: the gap is filled
			}
			if b.Count != want || !b.At.Equal(at.Add(time.Duration(i-8)*day)) {
				t.Fatalf("bucket %d: %+v, want %d", i, b, want)
			}
		}
		if len(tr.Top) != 1 || tr.Top[0] != (analytics.RuleCount{RuleID: "no-sql", Severity: "high", Violations: 56, Traces: 56}) {
			t.Fatalf("top %+v", tr.Top)
		}
		if tr.Risk.Traces != 280 || tr.Risk.Buckets[0].Traces != 224 || tr.Risk.Buckets[2].Traces != 56 || tr.Risk.P50 != 5 || tr.Risk.Mean != 9 {
			t.Fatalf("risk %+v", tr.Risk)
		}
		var never []string
		for _, r := range tr.Never {
			never = append(never, r.RuleID)
		}
		if strings.Join(never, ",") != "never,no-exfil" {
			t.Fatalf("never fired: %v", never)
		}
		hourly, err := analytics.RunTrends(ctx, s.Conn(), analytics.TrendsOptions{Range: analytics.Range{From: at.Add(-2 * day), To: at}, Interval: "hour", By: "severity"})
		if err != nil {
			t.Fatal(err)
		}
		if len(hourly.Series) != 2 || hourly.Series[0].Key != "high" || len(hourly.Series[0].Counts) != 48 {
			t.Fatalf("hourly by severity: %d series, first %q with %d buckets", len(hourly.Series), hourly.Series[0].Key, len(hourly.Series[0].Counts))
		}
	})

	t.Run("drift", func(t *testing.T) {
		tests := []struct {
			agent   string
			drifted bool
			want    []string // kinds and subjects that drifted
		}{
			{"stable", false, nil},
			{"shifty", true, []string{"novel_tool/shell", "novel_tool/wire_transfer", "rule_rate/no-exfil", "rule_rate/no-sql", "steps_per_trace/", "tool_mix/"}},
		}
		for _, tt := range tests {
			d, err := analytics.RunDrift(ctx, s.Conn(), analytics.DriftOptions{Agent: tt.agent, At: at, Window: day, Baseline: 7 * day})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range d.Findings {
				if f.Drifted {
					got = append(got, f.Kind+"/"+f.Subject)
				}
			}
			if d.Drifted != tt.drifted || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("%s: drifted %v with %v, want %v", tt.agent, d.Drifted, got, tt.want)
				for _, f := range d.Findings {
					t.Log(f.Kind, f.Subject, f.Detail)
				}
			}
			if err := analytics.StoreDrift(ctx, s.Conn(), d); err != nil {
				t.Fatal(err)
			}
		}
		var stored uint64
		if err := s.Conn().QueryRow(ctx, "SELECT countIf(drifted = 1) FROM drift_findings WHERE agent = 'shifty'").Scan(&stored); err != nil || stored != 6 {
			t.Fatalf("drift_findings holds %d drifted findings of shifty (%v), want 6", stored, err)
		}
	})

	t.Run("regress", func(t *testing.T) {
		sel := func(s string) analytics.Selector {
			v, err := analytics.ParseSelector(s)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		tests := []struct {
			candidate, verdict string
		}{
			{"version=1.1", analytics.VerdictRegression},
			{"version=1.2,agent=bot", analytics.VerdictNoChange},
		}
		for _, tt := range tests {
			r, err := analytics.RunRegress(ctx, s.Conn(), analytics.RegressOptions{Baseline: sel("version=1.0"), Candidate: sel(tt.candidate)})
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != tt.verdict || r.Traces != [2]uint64{60, 60} {
				t.Errorf("%s: %s over %v traces (%v)", tt.candidate, r.Verdict, r.Traces, r.Reasons)
			}
		}
		r, _ := analytics.RunRegress(ctx, s.Conn(), analytics.RegressOptions{Baseline: sel("version=1.1"), Candidate: sel("version=1.0")})
		if r == nil || r.Verdict != analytics.VerdictImprovement {
			t.Errorf("the reverse comparison: %+v", r)
		}
		if _, err := analytics.RunRegress(ctx, s.Conn(), analytics.RegressOptions{Baseline: sel("version=1.0"), Candidate: sel("version=9")}); err == nil ||
			!strings.Contains(err.Error(), "0 traces match version=9") {
			t.Errorf("no candidate traces: %v", err)
		}
	})
}

func TestSelectorAndTimeParsing(t *testing.T) {
	for _, bad := range []string{"", "version", "colour=red", "version="} {
		if _, err := analytics.ParseSelector(bad); err == nil {
			t.Errorf("selector %q accepted", bad)
		}
	}
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"36h":                  now.Add(-36 * time.Hour),
		"2026-06-01":           time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC),
		"2026-06-01T10:00:00Z": time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC),
		"now":                  now,
	} {
		got, err := analytics.ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := analytics.ParseTime("yesterday", now); err == nil {
		t.Error("ParseTime accepted yesterday")
	}
}
