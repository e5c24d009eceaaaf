//go:build chdb

// Command chdbcheck runs troy's ClickHouse migrations and analytics queries on chDB, the
// current ClickHouse engine as an in-process library, to prove that the SQL written for
// old servers is still valid on a current one. It needs libchdb.so (CHDB_LIB_PATH).
//
//	CHDB_LIB_PATH=/path/to/libchdb.so go run -tags chdb ./internal/chdbcheck
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/chdb-io/chdb-go/chdb"

	"github.com/troy-audit/troy/internal/analytics"
	"github.com/troy-audit/troy/internal/warehouse"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chdbcheck:", err)
		os.Exit(1)
	}
}

type session struct {
	s *chdb.Session
	n int
}

func (s *session) query(q string) (string, error) {
	s.n++
	r, err := s.s.Query(q, "TSV")
	if err != nil {
		return "", fmt.Errorf("%w\n  in: %s", err, q)
	}
	defer r.Free()
	if err := r.Error(); err != nil {
		return "", fmt.Errorf("%w\n  in: %s", err, q)
	}
	return r.String(), nil
}

func run() error {
	dir, err := os.MkdirTemp("", "troy-chdb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cs, err := chdb.NewSession(dir)
	if err != nil {
		return err
	}
	defer cs.Close()
	s := &session{s: cs}
	v, err := s.query("SELECT version()")
	if err != nil {
		return err
	}
	v = strings.TrimSpace(v)
	parts := strings.Split(v, ".")
	major, _ := strconv.Atoi(parts[0])
	minor, _ := strconv.Atoi(parts[1])
	version := warehouse.Version{Major: major, Minor: minor}
	fmt.Printf("chDB %s\n", v)

	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS troy", "USE troy", warehouse.MigrationsTable} {
		if _, err := s.query(q); err != nil {
			return err
		}
	}
	migs, err := warehouse.Migrations()
	if err != nil {
		return err
	}
	// Twice: every statement must be safe to run again.
	for round := range 2 {
		for _, m := range migs {
			if m.Requires != nil && !version.AtLeast(*m.Requires) {
				return fmt.Errorf("migration %s needs %s, newer than chDB %s", m.Name, m.Requires, version)
			}
			for i, stmt := range m.Statements {
				if _, err := s.query(stmt); err != nil {
					return fmt.Errorf("round %d, migration %s, statement %d: %w", round+1, m.Name, i+1, err)
				}
			}
		}
	}
	fmt.Printf("migrations: %d files applied twice\n", len(migs))

	for _, q := range seed {
		if _, err := s.query(q); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	at := time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)
	var queries []analytics.Query
	add := func(qs []analytics.Query, err error) {
		if err != nil {
			panic(err)
		}
		queries = append(queries, qs...)
	}
	day := 24 * time.Hour
	for _, by := range []string{"rule", "severity", "agent"} {
		for _, interval := range []string{"hour", "day"} {
			add(analytics.TrendsQueries(analytics.TrendsOptions{Range: analytics.Range{From: at.Add(-8 * day), To: at}, By: by, Interval: interval, Agent: "bot"}))
		}
	}
	add(analytics.DriftQueries(analytics.DriftOptions{Agent: "bot", At: at, Window: day, Baseline: 7 * day}))
	base, _ := analytics.ParseSelector("version=1.0")
	cand, _ := analytics.ParseSelector("version=1.1,environment=prod")
	add(analytics.RegressQueries(analytics.RegressOptions{Baseline: base, Candidate: cand, Range: analytics.Range{From: at.Add(-30 * day), To: at}}))
	rows := 0
	for _, q := range queries {
		out, err := s.query(bind(q.SQL, q.Args))
		if err != nil {
			return fmt.Errorf("query %q: %w", q.Name, err)
		}
		if strings.TrimSpace(out) != "" {
			rows++
		}
	}
	if rows == 0 {
		return fmt.Errorf("no query returned a row: the seed does not reach them")
	}
	insert := fmt.Sprintf("INSERT INTO drift_findings (%s) VALUES (%s)", strings.Join(analytics.DriftColumns(), ", "),
		"toDateTime('2026-06-15 00:00:00', 'UTC'), 'bot', 'tool_mix', '', toDateTime('2026-06-07 00:00:00', 'UTC'), toDateTime('2026-06-14 00:00:00', 'UTC'), toDateTime('2026-06-14 00:00:00', 'UTC'), toDateTime('2026-06-15 00:00:00', 'UTC'), 1, 2, 0.5, 0, 0.1, 1, 'x'")
	if _, err := s.query(insert); err != nil {
		return err
	}
	fmt.Printf("analytics: %d queries ran, %d returned rows\n", len(queries), rows)
	fmt.Printf("ok: %d statements\n", s.n)
	return nil
}

// bind puts arguments into a query as literals, as clickhouse-go does on the wire.
func bind(sql string, args []any) string {
	var b strings.Builder
	inString := false
	n := 0
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case c == '\\' && inString && i+1 < len(sql):
			b.WriteByte(c)
			i++
			b.WriteByte(sql[i])
			continue
		case c == '\'':
			inString = !inString
		case c == '?' && !inString:
			b.WriteString(literal(args[n]))
			n++
			continue
		}
		b.WriteByte(c)
	}
	if n != len(args) {
		panic(fmt.Sprintf("%d placeholders for %d arguments in %s", n, len(args), sql))
	}
	return b.String()
}

func literal(v any) string {
	switch v := v.(type) {
	case string:
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	case time.Time:
		return "toDateTime('" + v.UTC().Format("2006-01-02 15:04:05") + "', 'UTC')"
	case []string:
		parts := make([]string, len(v))
		for i, s := range v {
			parts[i] = literal(s)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// seed is a little of everything the analytics queries read.
var seed = []string{
	`INSERT INTO steps (agent, trace_id, run, seq, step_id, type, tool, description, input, output, metadata.key, metadata.value, parent_step_id, ts, agent_version, environment, policy, version) VALUES
	('bot', 't1', 'r', 0, 's0', 'tool_call', 'search', 'search', '{}', '{}', ['zone'], ['internal'], '', toDateTime('2026-06-10 10:00:00', 'UTC'), '1.0', 'prod', 'p1', 1),
	('bot', 't1', 'r', 1, 's1', 'tool_call', 'sql', 'sql', '{}', '{}', [], [], 's0', toDateTime('2026-06-10 10:00:01', 'UTC'), '1.0', 'prod', 'p1', 2),
	('bot', 't2', 'r', 0, 's0', 'tool_call', 'shell', 'shell', '{}', '{}', [], [], '', toDateTime('2026-06-14 10:00:00', 'UTC'), '1.1', 'prod', 'p1', 3)`,
	`INSERT INTO traces (agent, trace_id, run, agent_version, environment, policy_id, policy, risk_score, steps, tool_calls, violations, critical, high, medium, low, rule_errors, first_step_at, last_step_at, explanations, llm_model, llm_calls, llm_cached, llm_tokens, summary, metadata.key, metadata.value, finished_at, version) VALUES
	('bot', 't1', 'r', '1.0', 'prod', 'acme', 'p1', 25, 2, 2, 1, 0, 1, 0, 0, 0, toDateTime('2026-06-10 10:00:00', 'UTC'), toDateTime('2026-06-10 10:00:01', 'UTC'), 'off', '', 0, 0, 0, '', [], [], toDateTime('2026-06-10 10:00:02', 'UTC'), 4),
	('bot', 't2', 'r', '1.1', 'prod', 'acme', 'p1', 45, 1, 1, 1, 1, 0, 0, 0, 0, toDateTime('2026-06-14 10:00:00', 'UTC'), toDateTime('2026-06-14 10:00:00', 'UTC'), 'on', 'm', 2, 0, 15, 'x', ['team'], ['a'], toDateTime('2026-06-14 10:00:02', 'UTC'), 5)`,
	`INSERT INTO violations (agent, trace_id, run, step_index, step_id, rule_id, severity, weight, rule_description, details, ts, agent_version, environment, policy, version) VALUES
	('bot', 't1', 'r', 1, 's1', 'no-sql', 'high', 20, 'no raw sql', '', toDateTime('2026-06-10 10:00:01', 'UTC'), '1.0', 'prod', 'p1', 6),
	('bot', 't2', 'r', 0, 's0', 'no-exfil', 'critical', 40, 'no exfiltration', '', toDateTime('2026-06-14 10:00:00', 'UTC'), '1.1', 'prod', 'p1', 7)`,
	`INSERT INTO explanations (agent, trace_id, run, step_index, step_id, summary, rationale, alternatives, risk_factors, data_accessed, error, explained_at, version) VALUES
	('bot', 't2', 'r', 0, 's0', 's', 'r', ['a'], [], [], '', toDateTime('2026-06-14 10:00:03', 'UTC'), 8)`,
	`INSERT INTO rules (policy, policy_id, rule_id, severity, weight, description, first_seen, version) VALUES
	('p1', 'acme', 'no-sql', 'high', 20, 'no raw sql', toDateTime('2026-06-10 10:00:02', 'UTC'), 4),
	('p1', 'acme', 'never', 'low', 5, 'never fires', toDateTime('2026-06-10 10:00:02', 'UTC'), 4)`,
}
