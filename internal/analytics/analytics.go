// Package analytics answers questions about stored results: violation trends, behaviour
// drift of an agent over time, and regressions between agent versions. ClickHouse does
// the aggregation; the statistics and gap filling are done here, in Go, so that the SQL
// stays portable from ClickHouse 18.16 to current releases.
package analytics

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Query is one SQL query with its arguments, bound with ?.
type Query struct {
	Name string
	SQL  string
	Args []any
}

// Range is a half-open time range [From, To).
type Range struct{ From, To time.Time }

func (r Range) String() string {
	return r.From.UTC().Format(time.RFC3339) + " – " + r.To.UTC().Format(time.RFC3339)
}

// ParseDuration reads a duration with day and week units as well: 7d, 2w, 36h, 90m.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for unit, d := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, unit); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("duration %q: expected a positive number before %q, as in 7d", s, unit)
			}
			return time.Duration(v * float64(d)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("duration %q: expected a positive duration such as 7d, 24h or 30m", s)
	}
	return d, nil
}

// ParseTime reads a point in time: RFC 3339, a date, or a duration ago (7d means seven
// days before now).
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" || s == "now" {
		return now, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	d, err := ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: expected RFC 3339 (2026-05-01T00:00:00Z), a date (2026-05-01) or a duration ago (7d)", s)
	}
	return now.Add(-d), nil
}

// utc binds a time: the server reads times in UTC, and sub-seconds are not sent.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// rows runs a query and calls scan for each row.
func rows(ctx context.Context, conn driver.Conn, q Query, scan func(driver.Rows) error) error {
	r, err := conn.Query(ctx, q.SQL, q.Args...)
	if err != nil {
		return fmt.Errorf("%s: %w", q.Name, err)
	}
	defer r.Close()
	for r.Next() {
		if err := scan(r); err != nil {
			return fmt.Errorf("%s: %w", q.Name, err)
		}
	}
	if err := r.Err(); err != nil {
		return fmt.Errorf("%s: %w", q.Name, err)
	}
	return nil
}

// finite turns NaN and infinities into 0 for output formats that have no such values.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}
