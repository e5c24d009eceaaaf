package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/analytics"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/reporter"
)

// exitFound ends drift and regress when they find what they look for, so that a CI job or
// a cron script can act on it.
const exitFound = 3

// exitNotEnoughData ends drift when neither side holds enough traces or tool calls to
// compare, so that a script does not take "nothing compared" for "no drift".
const exitNotEnoughData = 5

// queryTimeout bounds one analytics command.
const queryTimeout = 5 * time.Minute

// query connects to ClickHouse and runs one command's queries, within queryTimeout.
func query[T any](ctx context.Context, ch *chFlags, run func(context.Context, *warehouse.Store) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	store, err := ch.open(ctx)
	if err != nil {
		var none T
		return none, err
	}
	defer store.Close()
	return run(ctx, store)
}

// timeRange reads --since and --until, each a time or a duration ago.
func timeRange(since, until string) (analytics.Range, error) {
	now := time.Now()
	from, err := analytics.ParseTime(since, now)
	if err != nil {
		return analytics.Range{}, fmt.Errorf("--since: %w", err)
	}
	to, err := analytics.ParseTime(until, now)
	if err != nil {
		return analytics.Range{}, fmt.Errorf("--until: %w", err)
	}
	return analytics.Range{From: from, To: to}, nil
}

func newTrendsCmd(a *app) *cobra.Command {
	var (
		ch           chFlags
		out          output
		since, until string
		o            analytics.TrendsOptions
	)
	cmd := &cobra.Command{
		Use:   "trends",
		Short: "Violations over time, top rules, risk scores and rules that never fired",
		Long: `Show, from the results stored in ClickHouse, violations per rule, severity or agent
per hour or day (every bucket listed, empty ones as 0), the most violated rules, the
distribution of risk scores, and the rules of the policies in use that never fired,
over a time range. --csv prints the time series as bucket,key,count rows.`,
		Example: `  troyctl trends --clickhouse clickhouse://127.0.0.1:9000/troy
  troyctl trends --since 48h --interval hour --by severity --agent support-bot
  troyctl trends --since 2026-05-01 --until 2026-06-01 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.Range, err = timeRange(since, until); err != nil {
				return err
			}
			if _, err := analytics.TrendsQueries(o); err != nil {
				return err
			}
			tr, err := query(cmd.Context(), &ch, func(ctx context.Context, store *warehouse.Store) (*analytics.Trends, error) {
				return analytics.RunTrends(ctx, store.Conn(), o)
			})
			if err != nil {
				return err
			}
			if tr.Risk.Traces == 0 {
				// On stderr, so that JSON and CSV stay as they are.
				stored := "nothing is stored yet"
				if tr.Stored != nil {
					stored = fmt.Sprintf("the stored traces span %s to %s (--since, --until)", tr.Stored.From.Format(time.RFC3339), tr.Stored.To.Format(time.RFC3339))
				}
				fmt.Fprintf(a.stderr, "troyctl: no traces between %s and %s; %s\n", tr.Range.From.UTC().Format(time.RFC3339), tr.Range.To.UTC().Format(time.RFC3339), stored)
			}
			return out.write(a.stdout, tr, seriesCSV(tr), trendsTables(tr)...)
		},
	}
	ch.register(cmd)
	out.register(cmd, "print the time series as CSV (bucket,key,count)")
	f := cmd.Flags()
	f.StringVar(&since, "since", "7d", "start: a time (2026-05-01, RFC 3339) or a duration ago (7d, 24h)")
	f.StringVar(&until, "until", "now", "end, as --since")
	f.StringVar(&o.Interval, "interval", "day", "bucket size: hour or day")
	f.StringVar(&o.By, "by", "rule", "series per rule, severity or agent")
	f.StringVar(&o.Agent, "agent", "", "only this agent")
	f.IntVar(&o.Top, "top", 10, "how many rules the top list shows")
	return cmd
}

// seriesColumns bounds the series shown side by side on a terminal; the rest are summed.
const seriesColumns = 6

func trendsTables(tr *analytics.Trends) []*table {
	scope := ""
	if tr.Agent != "" {
		scope = ", agent " + tr.Agent
	}
	series := &table{title: fmt.Sprintf("Violations per %s by %s, %s%s", tr.Interval, tr.By, tr.Range, scope), columns: []string{tr.Interval}}
	shown := tr.Series[:min(len(tr.Series), seriesColumns)]
	for _, s := range shown {
		series.columns = append(series.columns, s.Key)
	}
	if len(tr.Series) > seriesColumns {
		series.columns = append(series.columns, fmt.Sprintf("%d others", len(tr.Series)-seriesColumns))
	}
	series.columns = append(series.columns, "total")
	if len(tr.Series) > 0 {
		for i, b := range tr.Series[0].Counts {
			row := []any{b.At}
			var total, others uint64
			for j, s := range tr.Series {
				n := s.Counts[i].Count
				total += n
				if j < seriesColumns {
					row = append(row, n)
				} else {
					others += n
				}
			}
			if len(tr.Series) > seriesColumns {
				row = append(row, others)
			}
			series.add(append(row, total)...)
		}
	}
	top := &table{title: "Top rules", columns: []string{"rule", "severity", "violations", "traces"}}
	for _, r := range tr.Top {
		top.add(r.RuleID, r.Severity, r.Violations, r.Traces)
	}
	risk := &table{title: fmt.Sprintf("Risk scores of %d traces: mean %.1f, p50 %.0f, p90 %.0f, p99 %.0f", tr.Risk.Traces, tr.Risk.Mean, tr.Risk.P50, tr.Risk.P90, tr.Risk.P99),
		columns: []string{"score", "traces", ""}}
	for _, b := range tr.Risk.Buckets {
		bar := ""
		if tr.Risk.Traces > 0 {
			bar = strings.Repeat("█", int(40*b.Traces/tr.Risk.Traces))
		}
		risk.add(fmt.Sprintf("%d–%d", b.From, b.To), b.Traces, bar)
	}
	never := &table{title: "Rules that never fired (of the policies these traces used)", columns: []string{"rule", "severity", "description"}}
	for _, r := range tr.Never {
		never.add(r.RuleID, r.Severity, r.Description)
	}
	return []*table{series, top, risk, never}
}

func seriesCSV(tr *analytics.Trends) *table {
	t := &table{columns: []string{"bucket", "key", "count"}}
	for _, s := range tr.Series {
		for _, b := range s.Counts {
			t.add(b.At.UTC().Format(time.RFC3339), s.Key, b.Count)
		}
	}
	return t
}

func newDriftCmd(a *app) *cobra.Command {
	var (
		ch                   chFlags
		out                  output
		baseline, window, at string
		noStore              bool
		o                    analytics.DriftOptions
	)
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "Has an agent's behaviour shifted? Compare a recent window with a baseline",
		Long: `Compare an agent's recent window with the baseline period before it: the mix of
tools it calls (Jensen–Shannon divergence), the number of steps per trace (population
stability index), the share of traces violating each rule (two-proportion z-test,
Benjamini–Hochberg corrected), and tools it never called before. Findings are stored in
the drift_findings table (unless --no-store).

Exit codes: 0 no drift, 3 drift found, 5 not enough data (too few traces and tool
calls on either side to compare anything; see --min-samples), 1 error.`,
		Example: `  troyctl drift --agent support-bot --baseline 7d --window 1d
  troyctl drift --agent support-bot --baseline 28d --window 7d --at 2026-06-01 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.Baseline, err = analytics.ParseDuration(baseline); err != nil {
				return fmt.Errorf("--baseline: %w", err)
			}
			if o.Window, err = analytics.ParseDuration(window); err != nil {
				return fmt.Errorf("--window: %w", err)
			}
			if o.At, err = analytics.ParseTime(at, time.Now()); err != nil {
				return fmt.Errorf("--at: %w", err)
			}
			if _, err := analytics.DriftQueries(o); err != nil {
				return err
			}
			d, err := query(cmd.Context(), &ch, func(ctx context.Context, store *warehouse.Store) (*analytics.Drift, error) {
				d, err := analytics.RunDrift(ctx, store.Conn(), o)
				if err != nil || noStore {
					return d, err
				}
				return d, analytics.StoreDrift(ctx, store.Conn(), d)
			})
			if err != nil {
				return err
			}
			t := &table{columns: []string{"drift", "check", "subject", "baseline", "window", "statistic", "p", "detail"}}
			for _, f := range d.Findings {
				mark := "no"
				if f.Drifted {
					mark = "YES"
				}
				p := any("")
				if f.Kind == "rule_rate" {
					p = f.PValue
				}
				t.add(mark, f.Kind, f.Subject, f.Baseline, f.Window, f.Statistic, p, f.Detail)
			}
			verdict := "No drift"
			if d.Drifted {
				verdict = "DRIFT"
			}
			t.title = fmt.Sprintf("%s: agent %s, window %s against baseline %s", verdict, d.Agent, d.Window, d.Baseline)
			if !d.EnoughData {
				n := d.Samples
				t.title = fmt.Sprintf("Not enough data: agent %s has %d traces in the baseline and %d in the window (%d and %d tool calls); need %d each (--min-samples); window %s against baseline %s",
					d.Agent, n.BaselineTraces, n.WindowTraces, n.BaselineToolCalls, n.WindowToolCalls, n.Needed, d.Window, d.Baseline)
			}
			if err := out.write(a.stdout, d, t, t); err != nil {
				return err
			}
			switch {
			case d.Drifted:
				return &exitCodeError{code: exitFound}
			case !d.EnoughData:
				return &exitCodeError{code: exitNotEnoughData}
			}
			return nil
		},
	}
	ch.register(cmd)
	out.register(cmd, "print the findings as CSV")
	f := cmd.Flags()
	f.StringVar(&o.Agent, "agent", "", "the agent to check (required)")
	f.StringVar(&baseline, "baseline", "7d", "length of the baseline period, which ends where the window starts")
	f.StringVar(&window, "window", "1d", "length of the recent window")
	f.StringVar(&at, "at", "now", "end of the window: a time or a duration ago")
	f.Float64Var(&o.JSD, "jsd", 0.1, "tool-mix divergence (bits) above which the mix has drifted")
	f.Float64Var(&o.PSI, "psi", 0.2, "steps-per-trace PSI above which the length has drifted")
	f.Float64Var(&o.Alpha, "alpha", 0.05, "false discovery rate for the per-rule tests")
	f.Uint64Var(&o.MinSamples, "min-samples", 30, "fewest tool calls or traces on each side for a check to count")
	f.BoolVar(&noStore, "no-store", false, "do not record the findings in drift_findings")
	_ = cmd.MarkFlagRequired("agent")
	return cmd
}

func newRegressCmd(a *app) *cobra.Command {
	var (
		ch                  chFlags
		out                 output
		baseline, candidate string
		since, until        string
		o                   analytics.RegressOptions
	)
	cmd := &cobra.Command{
		Use:   "regress",
		Short: "Compare two agent versions: per-rule violation rates and risk scores, with a verdict",
		Long: `Compare the traces of a candidate (say, a new agent version) with a baseline's: the
share of traces violating each rule (two-proportion z-test, Benjamini–Hochberg
corrected) and the distribution of risk scores (Mann–Whitney U). Selectors are
key=value pairs over version (the agent_version of the trace's metadata), agent,
environment and policy, comma-separated.

Exit codes, for CI gates: 0 no regression (an improvement or no significant change),
3 regression, 1 error (such as too few traces to compare).`,
		Example: `  troyctl regress --baseline version=2.0 --candidate version=2.1
  troyctl regress --baseline version=2.0,environment=prod --candidate version=2.1,environment=staging --since 14d --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.Baseline, err = analytics.ParseSelector(baseline); err != nil {
				return fmt.Errorf("--baseline: %w", err)
			}
			if o.Candidate, err = analytics.ParseSelector(candidate); err != nil {
				return fmt.Errorf("--candidate: %w", err)
			}
			if since != "" {
				if o.Range, err = timeRange(since, until); err != nil {
					return err
				}
			}
			r, err := query(cmd.Context(), &ch, func(ctx context.Context, store *warehouse.Store) (*analytics.Regress, error) {
				return analytics.RunRegress(ctx, store.Conn(), o)
			})
			if err != nil {
				return err
			}
			rules := &table{title: "Traces violating each rule", columns: []string{"rule", "baseline", "candidate", "z", "adjusted p", "change"}}
			for _, rr := range r.Rules {
				rules.add(rr.RuleID, fmt.Sprintf("%.1f%%", 100*rr.Baseline), fmt.Sprintf("%.1f%%", 100*rr.Candidate), rr.Z, rr.PValue, rr.Change)
			}
			head := &table{title: fmt.Sprintf("%s vs %s: %s", r.Candidate, r.Baseline, strings.ToUpper(r.Verdict)), columns: []string{"", "baseline", "candidate"}}
			head.add("traces", r.Traces[0], r.Traces[1])
			head.add("mean risk score", r.Risk.BaselineMean, r.Risk.CandidateMean)
			head.add("P(candidate riskier)", "", fmt.Sprintf("%.2f (Mann–Whitney p %.3g higher, %.3g lower)", r.Risk.Effect, r.Risk.PHigher, r.Risk.PLower))
			for _, reason := range r.Reasons {
				head.add("reason", "", reason)
			}
			if err := out.write(a.stdout, r, rules, head, rules); err != nil {
				return err
			}
			if r.Verdict == analytics.VerdictRegression {
				return &exitCodeError{code: exitFound}
			}
			return nil
		},
	}
	ch.register(cmd)
	out.register(cmd, "print the per-rule comparison as CSV")
	f := cmd.Flags()
	f.StringVar(&baseline, "baseline", "", "traces to compare against, as version=2.0 (required)")
	f.StringVar(&candidate, "candidate", "", "traces under test, as version=2.1 (required)")
	f.StringVar(&since, "since", "", "only traces from this time (default: all)")
	f.StringVar(&until, "until", "now", "only traces before this time, with --since")
	f.Float64Var(&o.Alpha, "alpha", 0.05, "significance level")
	f.Uint64Var(&o.MinTraces, "min-traces", 30, "fewest traces each side needs")
	_ = cmd.MarkFlagRequired("baseline")
	_ = cmd.MarkFlagRequired("candidate")
	return cmd
}

func newSQLCmd(a *app) *cobra.Command {
	var (
		ch      chFlags
		out     output
		maxRows int
	)
	cmd := &cobra.Command{
		Use:   "sql QUERY",
		Short: "Run a read-only SQL query against troy's tables",
		Long: `Run one SQL query against troy's database in ClickHouse, read-only: the server refuses
anything that writes. Tables: steps, traces, violations, explanations, rules,
drift_findings. The sink's tables keep duplicates until ClickHouse merges them, so
read them with FINAL (or argMax over version).`,
		Example: `  troyctl sql 'SELECT agent, count() AS traces, avg(risk_score) AS risk FROM traces FINAL GROUP BY agent ORDER BY risk DESC'
  troyctl sql 'SELECT tool, count() AS calls FROM steps FINAL WHERE type = '"'"'tool_call'"'"' GROUP BY tool' --csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := query(cmd.Context(), &ch, func(ctx context.Context, store *warehouse.Store) (*warehouse.Rows, error) {
				return store.ReadOnly(ctx, args[0], maxRows)
			})
			if err != nil {
				return err
			}
			t := &table{columns: res.Columns}
			records := []map[string]any{}
			for _, vals := range res.Values {
				t.add(vals...)
				rec := map[string]any{}
				for i, v := range vals {
					rec[res.Columns[i]] = v
				}
				records = append(records, rec)
			}
			if out.json {
				return reporter.EncodeJSON(a.stdout, records)
			}
			if err := out.write(a.stdout, nil, t, t); err != nil {
				return err
			}
			if res.Truncated {
				fmt.Fprintf(a.stderr, "troyctl: showing the first %d rows (--max-rows)\n", maxRows)
			}
			return nil
		},
	}
	ch.register(cmd)
	out.register(cmd, "print the rows as CSV")
	cmd.Flags().IntVar(&maxRows, "max-rows", 10000, "stop after this many rows")
	return cmd
}
