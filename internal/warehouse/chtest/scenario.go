package chtest

import (
	"context"
	"fmt"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/schemas"
)

// Policy is the policy revision the scenario's traces name: three rules, one never violated.
func Policy(_ context.Context, hash string) (schemas.PolicyRules, error) {
	if hash != "p1" {
		return schemas.PolicyRules{}, fmt.Errorf("no policy %s", hash)
	}
	return schemas.PolicyRules{ID: "acme", Rules: []schemas.RuleInfo{
		{ID: "no-exfil", Severity: "critical", Description: "no exfiltration", Weight: 40},
		{ID: "no-sql", Severity: "high", Description: "no raw sql", Weight: 20},
		{ID: "never", Severity: "low", Description: "never fires", Weight: 5},
	}}, nil
}

// Scenario is eight days of traces before at, with known answers:
//
//   - agent "stable": 40 traces a day (none on the fourth day), four tool patterns in
//     turn, no-sql violated in every fifth trace; the last day is like the others, so it
//     has not drifted.
//   - agent "shifty": like stable for seven days; on the last day it calls two tools it never
//     called before, shell and wire_transfer, takes more steps, and violates no-exfil in
//     every other trace instead of no-sql.
//   - agent "bot": 60 traces of each version 1.0, 1.1 and 1.2 on the last two days;
//     1.1 violates no-sql five times as often and no-exfil too (a regression), 1.2 is like
//     1.0.
func Scenario(at time.Time) []Trace {
	var out []Trace
	day := 24 * time.Hour
	base := at.Add(-8 * day)
	steady := [][]string{{"search", "sql"}, {"search", "email", "search"}, {"search"}, {"sql", "email", "search", "search"}}
	for d := range 8 {
		for i := range 40 {
			start := base.Add(time.Duration(d)*day + time.Duration(i)*10*time.Minute)
			tr := Trace{Agent: "stable", Policy: "p1", Version: "3.0", Environment: "prod", Start: start, Tools: steady[i%4], Risk: 5}
			if i%5 == 0 {
				tr.Violations, tr.Risk = []schemas.Violation{{RuleID: "no-sql", StepID: "s0", Severity: "high"}}, 25
			}
			if d != 3 {
				tr.ID = fmt.Sprintf("stable-%d-%d", d, i)
				out = append(out, tr)
			}
			tr.Agent, tr.ID = "shifty", fmt.Sprintf("shifty-%d-%d", d, i)
			if d == 7 {
				tr.Tools, tr.Violations, tr.Risk = []string{"shell", "search"}, nil, 5
				if i%2 == 0 {
					tr.Tools = []string{"shell", "shell", "wire_transfer", "shell", "shell", "shell"}
					tr.Violations, tr.Risk = []schemas.Violation{{RuleID: "no-exfil", StepID: "s2", Severity: "critical"}}, 45
				}
			}
			out = append(out, tr)
		}
	}
	for v, version := range []string{"1.0", "1.1", "1.2"} {
		for i := range 60 {
			start := at.Add(-2*day + time.Duration(i)*20*time.Minute)
			tr := Trace{Agent: "bot", ID: fmt.Sprintf("bot-%s-%d", version, i), Policy: "p1", Version: version, Environment: "staging",
				Start: start, Tools: steady[i%4], Risk: 5}
			bad := i%10 == 0
			if version == "1.1" {
				bad = i%2 == 0
			}
			if bad {
				tr.Violations, tr.Risk = []schemas.Violation{{RuleID: "no-sql", StepID: "s0", Severity: "high"}}, 25
			}
			if version == "1.1" && i%5 == 1 {
				tr.Violations = append(tr.Violations, schemas.Violation{RuleID: "no-exfil", StepID: "s0", Severity: "critical"})
				tr.Risk += 40
			}
			tr.Run = fmt.Sprint(v)
			out = append(out, tr)
		}
	}
	for i := range out {
		if out[i].Run == "" {
			out[i].Run = "r"
		}
		out[i].Explained = i%3 == 0
		out[i].Output = i%2 == 0
	}
	return out
}

// Seed stores traces through the sink, in batches as the pipeline would.
func Seed(ctx context.Context, s *warehouse.Store, traces []Trace) error {
	var seq uint64
	var batch []event.Envelope
	reader := NewReader(nil)
	sink := warehouse.NewSink(s, reader.Read, Policy, nil)
	flush := func() error {
		reader.Add(batch)
		err := sink.Write(ctx, batch)
		batch = batch[:0]
		return err
	}
	for _, tr := range traces {
		evs, err := Events(tr, &seq)
		if err != nil {
			return err
		}
		batch = append(batch, evs...)
		if len(batch) >= 10000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Large is n traces of five agents and three versions over the 30 days before at, with
// about ten steps each from a mix of eight tools, and a violation in about one in four:
// data to time the sink and the analytics on.
func Large(n int, at time.Time) []Trace {
	tools := []string{"search", "sql", "email", "http_get", "shell", "read_file", "write_file", "payments"}
	rules := []schemas.Violation{
		{RuleID: "no-sql", StepID: "s1", Severity: "high"},
		{RuleID: "no-exfil", StepID: "s3", Severity: "critical"},
	}
	out := make([]Trace, n)
	span := 30 * 24 * time.Hour
	for i := range out {
		steps := 6 + (i*7)%9 // 6–14
		tr := Trace{
			Agent: fmt.Sprintf("agent-%d", i%5), ID: fmt.Sprintf("large-%d", i), Run: "r", Policy: "p1",
			Version: fmt.Sprintf("1.%d", i%3), Environment: "prod", Risk: 5,
			Start: at.Add(-span + time.Duration(int64(span)/int64(n)*int64(i))),
		}
		for s := range steps {
			tr.Tools = append(tr.Tools, tools[(i*3+s*5)%len(tools)])
		}
		if i%4 == 0 {
			v := rules[(i/4)%2]
			tr.Violations, tr.Risk = []schemas.Violation{v}, 25+20*((i/4)%2)
		}
		out[i] = tr
	}
	return out
}
