package analytics

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// TrendsOptions chooses what trends covers.
type TrendsOptions struct {
	Range
	Interval string // "hour" or "day"
	By       string // "rule", "severity" or "agent"
	Agent    string // only this agent; empty for all
	Top      int    // rules in the top list; zero means 10
}

// Trends is violations over time, the most violated rules, the distribution of risk
// scores, and the rules that never fired, over a time range.
type Trends struct {
	Range    Range         `json:"range"`
	Interval string        `json:"interval"`
	By       string        `json:"by"`
	Agent    string        `json:"agent,omitempty"`
	Series   []Series      `json:"series"`
	Top      []RuleCount   `json:"top_rules"`
	Risk     RiskSummary   `json:"risk"`
	Never    []RuleSummary `json:"never_fired"`
	// Stored is the time range of the stored traces (of the agent), given when the range
	// asked for has none, so that an empty answer says where the data is; nil otherwise,
	// or when nothing is stored.
	Stored *Range `json:"stored,omitempty"`
}

// Series is one key's violation counts per bucket, every bucket of the range present.
type Series struct {
	Key    string   `json:"key"`
	Total  uint64   `json:"total"`
	Counts []Bucket `json:"counts"`
}

// Bucket is a count at the start of a time bucket.
type Bucket struct {
	At    time.Time `json:"at"`
	Count uint64    `json:"count"`
}

// RuleCount is how often a rule fired and in how many traces.
type RuleCount struct {
	RuleID     string `json:"rule_id"`
	Severity   string `json:"severity"`
	Violations uint64 `json:"violations"`
	Traces     uint64 `json:"traces"`
}

// RiskSummary is the distribution of the traces' risk scores.
type RiskSummary struct {
	Traces  uint64     `json:"traces"`
	Mean    float64    `json:"mean"`
	P50     float64    `json:"p50"`
	P90     float64    `json:"p90"`
	P99     float64    `json:"p99"`
	Buckets []RiskBand `json:"buckets"`
}

// RiskBand counts the traces whose score is in [From, To].
type RiskBand struct {
	From   int    `json:"from"`
	To     int    `json:"to"`
	Traces uint64 `json:"traces"`
}

// RuleSummary names a rule.
type RuleSummary struct {
	RuleID      string `json:"rule_id"`
	Severity    string `json:"severity"`
	Description string `json:"description"`
}

func (o *TrendsOptions) normalize() error {
	if o.Interval == "" {
		o.Interval = "day"
	}
	if o.By == "" {
		o.By = "rule"
	}
	if o.Top <= 0 {
		o.Top = 10
	}
	if o.Interval != "hour" && o.Interval != "day" {
		return fmt.Errorf("interval %q: expected hour or day", o.Interval)
	}
	if _, ok := trendKeys[o.By]; !ok {
		return fmt.Errorf("by %q: expected rule, severity or agent", o.By)
	}
	if !o.From.Before(o.To) {
		return fmt.Errorf("time range %s is empty: --since must be before --until", o.Range)
	}
	return nil
}

var trendKeys = map[string]string{"rule": "rule_id", "severity": "toString(severity)", "agent": "agent"}

// TrendsQueries are the queries Trends runs.
func TrendsQueries(o TrendsOptions) ([]Query, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	bucket := "toStartOfDay(ts)"
	if o.Interval == "hour" {
		bucket = "toStartOfHour(ts)"
	}
	vWhere, vArgs := "ts >= ? AND ts < ?", []any{utc(o.From), utc(o.To)}
	tWhere, tArgs := "first_step_at >= ? AND first_step_at < ?", []any{utc(o.From), utc(o.To)}
	if o.Agent != "" {
		vWhere += " AND agent = ?"
		vArgs = append(vArgs, o.Agent)
		tWhere += " AND agent = ?"
		tArgs = append(tArgs, o.Agent)
	}
	return []Query{
		{"series", "SELECT " + bucket + " AS bucket, " + trendKeys[o.By] + " AS key, count() AS n FROM violations FINAL WHERE " + vWhere +
			" GROUP BY bucket, key ORDER BY bucket, key", vArgs},
		{"top rules", "SELECT rule_id, toString(any(severity)) AS sev, count() AS n, uniqExact(agent, trace_id, run) AS traces FROM violations FINAL WHERE " + vWhere +
			" GROUP BY rule_id ORDER BY n DESC, rule_id LIMIT ?", append(slices.Clone(vArgs), o.Top)},
		{"risk", "SELECT count() AS n, avg(risk_score) AS mean, quantilesExact(0.5, 0.9, 0.99)(risk_score) AS q FROM traces FINAL WHERE " + tWhere, tArgs},
		{"risk bands", "SELECT intDiv(risk_score, 10) AS band, count() AS n FROM traces FINAL WHERE " + tWhere + " GROUP BY band ORDER BY band", tArgs},
		{"never fired", "SELECT rule_id, toString(any(severity)) AS sev, any(description) AS description FROM rules FINAL" +
			" WHERE policy IN (SELECT policy FROM traces FINAL WHERE " + tWhere + ")" +
			" AND rule_id NOT IN (SELECT rule_id FROM violations FINAL WHERE " + vWhere + ")" +
			" GROUP BY rule_id ORDER BY rule_id", append(slices.Clone(tArgs), vArgs...)},
		storedRangeQuery(o.Agent),
	}, nil
}

// storedRangeQuery finds the span of the stored traces' first steps, of one agent or all.
func storedRangeQuery(agent string) Query {
	q := Query{"stored range", "SELECT count() AS n, min(first_step_at) AS first, max(first_step_at) AS last FROM traces FINAL", nil}
	if agent != "" {
		q.SQL += " WHERE agent = ?"
		q.Args = []any{agent}
	}
	return q
}

// RunTrends computes the trends.
func RunTrends(ctx context.Context, conn driver.Conn, o TrendsOptions) (*Trends, error) {
	qs, err := TrendsQueries(o)
	if err != nil {
		return nil, err
	}
	_ = o.normalize()
	out := &Trends{Range: o.Range, Interval: o.Interval, By: o.By, Agent: o.Agent, Top: []RuleCount{}, Never: []RuleSummary{}}
	counts := map[string]map[time.Time]uint64{}
	if err := rows(ctx, conn, qs[0], func(r driver.Rows) error {
		var at time.Time
		var key string
		var n uint64
		if err := r.Scan(&at, &key, &n); err != nil {
			return err
		}
		if counts[key] == nil {
			counts[key] = map[time.Time]uint64{}
		}
		counts[key][at.UTC()] = n
		return nil
	}); err != nil {
		return nil, err
	}
	out.Series = fillSeries(counts, buckets(o.Range, o.Interval))
	if err := rows(ctx, conn, qs[1], func(r driver.Rows) error {
		var rc RuleCount
		if err := r.Scan(&rc.RuleID, &rc.Severity, &rc.Violations, &rc.Traces); err != nil {
			return err
		}
		out.Top = append(out.Top, rc)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := rows(ctx, conn, qs[2], func(r driver.Rows) error {
		var q []float64
		if err := r.Scan(&out.Risk.Traces, &out.Risk.Mean, &q); err != nil {
			return err
		}
		if out.Risk.Traces > 0 && len(q) == 3 {
			out.Risk.P50, out.Risk.P90, out.Risk.P99 = q[0], q[1], q[2]
		}
		out.Risk.Mean = finite(out.Risk.Mean)
		return nil
	}); err != nil {
		return nil, err
	}
	bands := make([]uint64, 10)
	if err := rows(ctx, conn, qs[3], func(r driver.Rows) error {
		var band uint8
		var n uint64
		if err := r.Scan(&band, &n); err != nil {
			return err
		}
		bands[min(int(band), 9)] += n // 100 joins 90–99
		return nil
	}); err != nil {
		return nil, err
	}
	for i, n := range bands {
		hi := i*10 + 9
		if i == 9 {
			hi = 100
		}
		out.Risk.Buckets = append(out.Risk.Buckets, RiskBand{From: i * 10, To: hi, Traces: n})
	}
	if err := rows(ctx, conn, qs[4], func(r driver.Rows) error {
		var rs RuleSummary
		if err := r.Scan(&rs.RuleID, &rs.Severity, &rs.Description); err != nil {
			return err
		}
		out.Never = append(out.Never, rs)
		return nil
	}); err != nil {
		return nil, err
	}
	if out.Risk.Traces == 0 {
		if out.Stored, err = storedRange(ctx, conn, qs[5]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// storedRange runs storedRangeQuery: nil when no trace is stored.
func storedRange(ctx context.Context, conn driver.Conn, q Query) (*Range, error) {
	var stored *Range
	err := rows(ctx, conn, q, func(r driver.Rows) error {
		var n uint64
		var first, last time.Time
		if err := r.Scan(&n, &first, &last); err != nil {
			return err
		}
		if n > 0 {
			stored = &Range{From: first.UTC(), To: last.UTC()}
		}
		return nil
	})
	return stored, err
}

// buckets lists the starts of the buckets that overlap r, in UTC.
func buckets(r Range, interval string) []time.Time {
	step := 24 * time.Hour
	if interval == "hour" {
		step = time.Hour
	}
	start := r.From.UTC().Truncate(step)
	var out []time.Time
	for t := start; t.Before(r.To); t = t.Add(step) {
		out = append(out, t)
		if len(out) > 100000 {
			break // a range far too long for its interval; the table would be useless anyway
		}
	}
	return out
}

// fillSeries gives every key a count for every bucket, zero where nothing happened, keys
// by total, most first.
func fillSeries(counts map[string]map[time.Time]uint64, at []time.Time) []Series {
	out := []Series{}
	for key, byTime := range counts {
		s := Series{Key: key, Counts: make([]Bucket, len(at))}
		for i, t := range at {
			s.Counts[i] = Bucket{At: t, Count: byTime[t]}
			s.Total += byTime[t]
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Series) int {
		if a.Total != b.Total {
			return int(math.Copysign(1, float64(b.Total)-float64(a.Total)))
		}
		if a.Key < b.Key {
			return -1
		}
		return 1
	})
	return out
}
