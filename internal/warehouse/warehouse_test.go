package warehouse_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
	"github.com/troy-audit/troy/schemas"
)

func TestParseMigrations(t *testing.T) {
	tests := []struct {
		name    string
		files   fstest.MapFS
		wantErr string
		check   func(t *testing.T, m []warehouse.Migration)
	}{
		{"ordered, gated, comments dropped", fstest.MapFS{
			"0002_b.sql": {Data: []byte("-- requires: 21.8\n-- a comment\nALTER TABLE t\n    ADD COLUMN c String;\nSELECT 1;\n")},
			"0001_a.sql": {Data: []byte("CREATE TABLE t (a String)\nENGINE = MergeTree ORDER BY a;\n")},
		}, "", func(t *testing.T, m []warehouse.Migration) {
			if len(m) != 2 || m[0].Number != 1 || m[1].Number != 2 || m[0].Requires != nil || *m[1].Requires != (warehouse.Version{Major: 21, Minor: 8}) {
				t.Fatalf("%+v", m)
			}
			if len(m[1].Statements) != 2 || m[1].Statements[0] != "ALTER TABLE t\n    ADD COLUMN c String" {
				t.Fatalf("statements %q", m[1].Statements)
			}
		}},
		{"bad name", fstest.MapFS{"1_a.sql": {Data: []byte("SELECT 1;\n")}}, "1_a.sql: the name must be NNNN_name.sql", nil},
		{"unterminated", fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1;\nSELECT 2\n")}}, "0001_a.sql, line 2: the last statement does not end with ';'", nil},
		{"empty", fstest.MapFS{"0001_a.sql": {Data: []byte("-- nothing\n")}}, "0001_a.sql: no statements", nil},
		{"same number", fstest.MapFS{"0001_a.sql": {Data: []byte("SELECT 1;\n")}, "0001_b.sql": {Data: []byte("SELECT 1;\n")}}, "share number 1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := warehouse.ParseMigrations(tt.files)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, m)
		})
	}
}

func TestEmbeddedMigrationsParse(t *testing.T) {
	m, err := warehouse.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(m) < 2 || m[0].Requires != nil {
		t.Fatalf("the base migration must run on any server: %+v", m)
	}
}

// migrated starts a server and migrates a database on it.
func migrated(t *testing.T) (*chtest.Server, *warehouse.Store) {
	t.Helper()
	srv := chtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, _, err := warehouse.Migrate(ctx, srv.DSN("troy"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return srv, s
}

func TestMigrateTwice(t *testing.T) {
	srv := chtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := warehouse.Open(ctx, srv.DSN("troy")); err == nil || !strings.Contains(err.Error(), `no database "troy": run troyctl migrate`) {
		t.Fatalf("open before migrate: %v", err)
	}
	states := func() string {
		s, st, err := warehouse.Migrate(ctx, srv.DSN("troy"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out []string
		for _, m := range st {
			out = append(out, m.Name+"="+m.State)
		}
		return strings.Join(out, " ")
	}
	gated := "applied"
	s, err := warehouse.Open(ctx, srv.DSN("default"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.ServerVersion().AtLeast(warehouse.Version{Major: 21, Minor: 8}) {
		gated = "skipped"
	}
	s.Close()
	if got, want := states(), "0001_tables.sql=applied 0002_modern.sql="+gated; got != want {
		t.Fatalf("first run: %s, want %s", got, want)
	}
	want := "0001_tables.sql=present 0002_modern.sql=present"
	if gated == "skipped" {
		want = "0001_tables.sql=present 0002_modern.sql=skipped"
	}
	if got := states(); got != want {
		t.Fatalf("second run: %s, want %s", got, want)
	}
	s, err = warehouse.Open(ctx, srv.DSN("troy"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var tables uint64
	if err := s.Conn().QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = 'troy' AND has(?, name)",
		[]string{"steps", "traces", "violations", "explanations", "rules", "drift_findings", "schema_migrations"}).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 7 {
		t.Fatalf("%d of 7 tables", tables)
	}
}

func TestBadDSN(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct{ dsn, want string }{
		{"", "no ClickHouse DSN"},
		{"clickhouse://u:secret@127.0.0.1:1/troy?dial_timeout=bogus", "u:***@"},
		{"127.0.0.1:1", "connection refused"},
	} {
		_, err := warehouse.Open(ctx, tt.dsn)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q): %v, want %q", tt.dsn, err, tt.want)
		}
	}
}

// events builds the events of a finished trace as the pipeline would carry them.
func events(t *testing.T, seq *uint64, agent, trace, run, version string, tools []string, violations []schemas.Violation) []event.Envelope {
	t.Helper()
	evs, err := chtest.Events(chtest.Trace{Agent: agent, ID: trace, Run: run, Policy: "p1", Version: version, Environment: "prod",
		Start: time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC), Tools: tools, Violations: violations, Risk: 40, Explained: true, Output: true}, seq)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// A batch stored twice, as after a redelivery, counts once in every table.
func TestSinkWriteTwiceCountsOnce(t *testing.T) {
	_, s := migrated(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var seq uint64
	batch := events(t, &seq, "support-bot", "t.1", "r1", "2.0", []string{"search", "sql", "email"},
		[]schemas.Violation{{RuleID: "no-sql", StepID: "s1", Severity: "high"}, {RuleID: "no-exfil", StepID: "s2", Severity: "critical"}})
	batch = append(batch, events(t, &seq, "support-bot", "t 2", "r2", "2.1", []string{"search"}, nil)...)
	batch = append(batch, event.Envelope{Subject: "troy.steps.x.y", Kind: event.KindStep, Data: []byte("{not json"), Seq: 999})
	sink := warehouse.NewSink(s, chtest.NewReader(batch).Read, chtest.Policy, nil)
	for range 2 {
		if err := sink.Write(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if sink.Skipped != 2 {
		t.Fatalf("skipped %d events, want the undecodable one twice", sink.Skipped)
	}
	counts := map[string]uint64{"steps": 4, "traces": 2, "violations": 2, "explanations": 2, "rules": 3}
	for table, want := range counts {
		var n uint64
		if err := s.Conn().QueryRow(ctx, "SELECT count() FROM "+table+" FINAL").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s: %d rows, want %d", table, n, want)
		}
	}
	var (
		tool, output, version, env string
		keys                       []string
		ts                         time.Time
	)
	if err := s.Conn().QueryRow(ctx, "SELECT tool, output, agent_version, environment, metadata.key, ts FROM steps FINAL WHERE trace_id = 't.1' AND seq = 0").
		Scan(&tool, &output, &version, &env, &keys, &ts); err != nil {
		t.Fatal(err)
	}
	if tool != "search" || output != `{"rows":2}` || version != "2.0" || env != "prod" || strings.Join(keys, ",") != "n,zone" || !ts.Equal(time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("step row: %q %q %q %q %q %v", tool, output, version, env, keys, ts)
	}
	var (
		risk                   uint8
		steps, critical, calls uint32
		state, summary         string
		first, last            time.Time
	)
	if err := s.Conn().QueryRow(ctx, "SELECT risk_score, steps, critical, llm_calls, explanations, summary, first_step_at, last_step_at FROM traces FINAL WHERE trace_id = 't.1'").
		Scan(&risk, &steps, &critical, &calls, &state, &summary, &first, &last); err != nil {
		t.Fatal(err)
	}
	if risk != 40 || steps != 3 || critical != 1 || calls != 2 || state != "on" || summary != "it looked things up" || last.Sub(first) != 2*time.Second {
		t.Fatalf("trace row: %d %d %d %d %q %q %v %v", risk, steps, critical, calls, state, summary, first, last)
	}
	var weight uint16
	var vts time.Time
	if err := s.Conn().QueryRow(ctx, "SELECT weight, ts FROM violations FINAL WHERE rule_id = 'no-exfil'").Scan(&weight, &vts); err != nil {
		t.Fatal(err)
	}
	if weight != 40 || !vts.Equal(time.Date(2026, 4, 1, 10, 0, 2, 0, time.UTC)) {
		t.Fatalf("violation row: weight %d at %v", weight, vts)
	}
}

// A trace's row is the same whether the sink saw its steps (and remembers them) or reads
// them back from the stream (after a restart, or when the steps lag behind).
func TestTraceRowsFromMemoryEqualReadBack(t *testing.T) {
	srv := chtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var seq uint64
	var all, steps, ends []event.Envelope
	for _, tr := range chtest.Large(50, time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)) {
		evs, err := chtest.Events(tr, &seq)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
	}
	for _, e := range all {
		if e.Kind == event.KindStep {
			steps = append(steps, e)
		} else {
			ends = append(ends, e)
		}
	}
	read := chtest.NewReader(all).Read
	dump := func(db string, write func(s *warehouse.Store)) string {
		s, _, err := warehouse.Migrate(ctx, srv.DSN(db))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		write(s)
		var out strings.Builder
		for _, q := range []string{
			"SELECT trace_id, steps, tool_calls, first_step_at, last_step_at, agent_version, metadata.key, metadata.value, version FROM traces FINAL ORDER BY trace_id",
			"SELECT trace_id, rule_id, step_index, ts, weight FROM violations FINAL ORDER BY trace_id, rule_id",
		} {
			rows, err := s.Conn().Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				vals := make([]any, len(rows.ColumnTypes()))
				for i, ct := range rows.ColumnTypes() {
					vals[i] = reflect.New(ct.ScanType()).Interface()
				}
				if err := rows.Scan(vals...); err != nil {
					t.Fatal(err)
				}
				for _, v := range vals {
					fmt.Fprint(&out, reflect.ValueOf(v).Elem().Interface(), " ")
				}
				out.WriteByte('\n')
			}
			rows.Close()
		}
		return out.String()
	}
	remembered := dump("remembered", func(s *warehouse.Store) {
		if err := warehouse.NewSink(s, read, chtest.Policy, nil).Write(ctx, all); err != nil {
			t.Fatal(err)
		}
	})
	readBack := dump("read_back", func(s *warehouse.Store) {
		if err := warehouse.NewSink(s, read, chtest.Policy, nil).Write(ctx, steps); err != nil {
			t.Fatal(err)
		}
		if err := warehouse.NewSink(s, read, chtest.Policy, nil).Write(ctx, ends); err != nil { // a fresh sink: nothing remembered
			t.Fatal(err)
		}
	})
	if remembered != readBack || strings.Count(remembered, "\n") < 60 {
		t.Fatalf("remembered:\n%s\nread back:\n%s", remembered, readBack)
	}
}
