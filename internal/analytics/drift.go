package analytics

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DriftOptions compares an agent's recent window with the baseline before it.
type DriftOptions struct {
	Agent    string
	At       time.Time     // end of the window; zero means now
	Window   time.Duration // the recent period
	Baseline time.Duration // the period before the window
	// Thresholds: Jensen–Shannon divergence of the tool mix (bits), PSI of steps per
	// trace, and the false discovery rate for per-rule violation rates. Zero means 0.1,
	// 0.2 and 0.05.
	JSD, PSI, Alpha float64
	// MinSamples is the fewest tool calls or traces on each side for a test to count.
	// Zero means 30.
	MinSamples uint64
}

// Drift is what changed in an agent's behaviour.
type Drift struct {
	Agent      string    `json:"agent"`
	Baseline   Range     `json:"baseline"`
	Window     Range     `json:"window"`
	DetectedAt time.Time `json:"detected_at"`
	Drifted    bool      `json:"drifted"`
	// EnoughData says whether either side held enough traces or tool calls for any
	// comparison; without it, "no drift" means nothing was compared.
	EnoughData bool         `json:"enough_data"`
	Samples    DriftSamples `json:"samples"`
	Findings   []Finding    `json:"findings"`
}

// DriftSamples are what the baseline and the window hold, and the fewest a comparison needs
// on each side.
type DriftSamples struct {
	BaselineTraces    uint64 `json:"baseline_traces"`
	WindowTraces      uint64 `json:"window_traces"`
	BaselineToolCalls uint64 `json:"baseline_tool_calls"`
	WindowToolCalls   uint64 `json:"window_tool_calls"`
	Needed            uint64 `json:"needed"`
}

// Finding is one check of drift.
type Finding struct {
	Kind      string  `json:"kind"`    // tool_mix, steps_per_trace, rule_rate or novel_tool
	Subject   string  `json:"subject"` // the rule or tool; empty for whole distributions
	Baseline  float64 `json:"baseline"`
	Window    float64 `json:"window"`
	Statistic float64 `json:"statistic"` // divergence, PSI or z
	PValue    float64 `json:"p_value"`   // adjusted for rule rates; 0 where not a test
	Threshold float64 `json:"threshold"`
	Drifted   bool    `json:"drifted"`
	Detail    string  `json:"detail"`
}

func (o *DriftOptions) normalize() error {
	if o.Agent == "" {
		return fmt.Errorf("drift needs an agent (--agent)")
	}
	if o.Window <= 0 || o.Baseline <= 0 {
		return fmt.Errorf("drift needs a positive --window and --baseline")
	}
	if o.At.IsZero() {
		o.At = time.Now()
	}
	o.At = utc(o.At)
	if o.JSD <= 0 {
		o.JSD = 0.1
	}
	if o.PSI <= 0 {
		o.PSI = 0.2
	}
	if o.Alpha <= 0 {
		o.Alpha = 0.05
	}
	if o.MinSamples == 0 {
		o.MinSamples = 30
	}
	return nil
}

func (o DriftOptions) ranges() (base, win Range) {
	win = Range{From: o.At.Add(-o.Window), To: o.At}
	base = Range{From: win.From.Add(-o.Baseline), To: win.From}
	return base, win
}

// DriftQueries are the queries RunDrift runs.
func DriftQueries(o DriftOptions) ([]Query, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	base, win := o.ranges()
	split, from, to := utc(win.From), utc(base.From), utc(win.To)
	return []Query{
		{"tool mix", "SELECT tool, countIf(ts < ?) AS base, countIf(ts >= ?) AS win FROM steps FINAL" +
			" WHERE agent = ? AND type = 'tool_call' AND ts >= ? AND ts < ? GROUP BY tool ORDER BY tool",
			[]any{split, split, o.Agent, from, to}},
		{"steps per trace", "SELECT steps, countIf(first_step_at < ?) AS base, countIf(first_step_at >= ?) AS win FROM traces FINAL" +
			" WHERE agent = ? AND first_step_at >= ? AND first_step_at < ? GROUP BY steps ORDER BY steps",
			[]any{split, split, o.Agent, from, to}},
		{"rule rates", "SELECT rule_id, uniqExactIf(trace_id, run, ts < ?) AS base, uniqExactIf(trace_id, run, ts >= ?) AS win FROM violations FINAL" +
			" WHERE agent = ? AND ts >= ? AND ts < ? GROUP BY rule_id ORDER BY rule_id",
			[]any{split, split, o.Agent, from, to}},
	}, nil
}

// RunDrift compares the window with the baseline.
func RunDrift(ctx context.Context, conn driver.Conn, o DriftOptions) (*Drift, error) {
	qs, err := DriftQueries(o)
	if err != nil {
		return nil, err
	}
	_ = o.normalize()
	base, win := o.ranges()
	d := &Drift{Agent: o.Agent, Baseline: base, Window: win, DetectedAt: utc(time.Now()), Findings: []Finding{}}

	var tools []string
	var tb, tw []float64
	if err := rows(ctx, conn, qs[0], func(r driver.Rows) error {
		var tool string
		var b, w uint64
		if err := r.Scan(&tool, &b, &w); err != nil {
			return err
		}
		tools, tb, tw = append(tools, tool), append(tb, float64(b)), append(tw, float64(w))
		return nil
	}); err != nil {
		return nil, err
	}
	stepsBase, stepsWin := map[int]uint64{}, map[int]uint64{}
	if err := rows(ctx, conn, qs[1], func(r driver.Rows) error {
		var steps uint32
		var b, w uint64
		if err := r.Scan(&steps, &b, &w); err != nil {
			return err
		}
		if b > 0 {
			stepsBase[int(steps)] = b
		}
		if w > 0 {
			stepsWin[int(steps)] = w
		}
		return nil
	}); err != nil {
		return nil, err
	}
	type rate struct {
		rule   string
		xb, xw uint64
	}
	var rates []rate
	if err := rows(ctx, conn, qs[2], func(r driver.Rows) error {
		var rt rate
		if err := r.Scan(&rt.rule, &rt.xb, &rt.xw); err != nil {
			return err
		}
		rates = append(rates, rt)
		return nil
	}); err != nil {
		return nil, err
	}

	// Tool mix.
	nb, nw := sum(tb), sum(tw)
	f := Finding{Kind: "tool_mix", Threshold: o.JSD, Baseline: nb, Window: nw}
	if nb < float64(o.MinSamples) || nw < float64(o.MinSamples) {
		f.Detail = fmt.Sprintf("too few tool calls to compare (%d and %d; need %d each)", int(nb), int(nw), o.MinSamples)
	} else {
		f.Statistic = JensenShannon(tb, tw)
		f.Drifted = f.Statistic > o.JSD
		f.Detail = fmt.Sprintf("Jensen–Shannon divergence %.3f bits over %d tools (threshold %.3g)", f.Statistic, len(tools), o.JSD)
	}
	d.Findings = append(d.Findings, f)

	// Tools used in the window and never in the baseline.
	if nb >= float64(o.MinSamples) {
		for i, tool := range tools {
			if tb[i] == 0 && tw[i] > 0 {
				d.Findings = append(d.Findings, Finding{Kind: "novel_tool", Subject: tool, Window: tw[i], Drifted: true,
					Detail: fmt.Sprintf("%d calls in the window, none in the baseline", int(tw[i]))})
			}
		}
	}

	// Steps per trace.
	tracesBase, tracesWin := total(stepsBase), total(stepsWin)
	f = Finding{Kind: "steps_per_trace", Threshold: o.PSI, Baseline: mean(stepsBase), Window: mean(stepsWin)}
	if tracesBase < o.MinSamples || tracesWin < o.MinSamples {
		f.Detail = fmt.Sprintf("too few traces to compare (%d and %d; need %d each)", tracesBase, tracesWin, o.MinSamples)
	} else {
		f.Statistic = PSI(stepsBase, stepsWin)
		f.Drifted = f.Statistic > o.PSI
		f.Detail = fmt.Sprintf("PSI %.3f; mean steps %.1f → %.1f (threshold %.3g)", f.Statistic, f.Baseline, f.Window, o.PSI)
	}
	d.Findings = append(d.Findings, f)

	// Violation rate per rule, corrected for testing every rule at once.
	if tracesBase >= o.MinSamples && tracesWin >= o.MinSamples && len(rates) > 0 {
		p := make([]float64, len(rates))
		z := make([]float64, len(rates))
		for i, rt := range rates {
			z[i], p[i] = TwoProportion(min(rt.xb, tracesBase), tracesBase, min(rt.xw, tracesWin), tracesWin)
		}
		adj := BenjaminiHochberg(p)
		for i, rt := range rates {
			rb, rw := float64(min(rt.xb, tracesBase))/float64(tracesBase), float64(min(rt.xw, tracesWin))/float64(tracesWin)
			f := Finding{Kind: "rule_rate", Subject: rt.rule, Baseline: rb, Window: rw, Statistic: z[i], PValue: adj[i], Threshold: o.Alpha}
			f.Drifted = adj[i] < o.Alpha
			f.Detail = fmt.Sprintf("violated in %.1f%% → %.1f%% of traces (z %.2f, adjusted p %.3g)", 100*rb, 100*rw, z[i], adj[i])
			d.Findings = append(d.Findings, f)
		}
	}
	d.Samples = DriftSamples{BaselineTraces: tracesBase, WindowTraces: tracesWin, BaselineToolCalls: uint64(nb), WindowToolCalls: uint64(nw), Needed: o.MinSamples}
	d.EnoughData = (nb >= float64(o.MinSamples) && nw >= float64(o.MinSamples)) || (tracesBase >= o.MinSamples && tracesWin >= o.MinSamples)
	for i := range d.Findings {
		d.Findings[i].Statistic = finite(d.Findings[i].Statistic)
		d.Drifted = d.Drifted || d.Findings[i].Drifted
	}
	sortFindings(d.Findings)
	return d, nil
}

func sum(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

func mean(h map[int]uint64) float64 {
	n := total(h)
	if n == 0 {
		return 0
	}
	s := 0.0
	for v, c := range h {
		s += float64(v) * float64(c)
	}
	return s / float64(n)
}

// DriftColumns are the columns of drift_findings that StoreDrift writes, in order.
func DriftColumns() []string { return slices.Clone(driftColumns) }

// driftColumns are the columns of drift_findings that StoreDrift writes.
var driftColumns = []string{"detected_at", "agent", "kind", "subject", "baseline_start", "baseline_end", "window_start", "window_end",
	"baseline_value", "window_value", "statistic", "p_value", "threshold", "drifted", "detail"}

// StoreDrift records the findings in drift_findings.
func StoreDrift(ctx context.Context, conn driver.Conn, d *Drift) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO drift_findings ("+strings.Join(driftColumns, ", ")+")")
	if err != nil {
		return fmt.Errorf("store drift findings: %w", err)
	}
	defer b.Abort()
	if len(b.Columns()) != len(driftColumns) {
		return fmt.Errorf("store drift findings: the server took %d of %d columns", len(b.Columns()), len(driftColumns))
	}
	for _, f := range d.Findings {
		drifted := uint8(0)
		if f.Drifted {
			drifted = 1
		}
		if err := b.Append(d.DetectedAt, d.Agent, f.Kind, f.Subject, utc(d.Baseline.From), utc(d.Baseline.To), utc(d.Window.From), utc(d.Window.To),
			finite(f.Baseline), finite(f.Window), finite(f.Statistic), finite(f.PValue), f.Threshold, drifted, f.Detail); err != nil {
			return fmt.Errorf("store drift findings: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("store drift findings: %w", err)
	}
	return nil
}

// sortFindings puts drifted findings first, then by kind and subject.
func sortFindings(f []Finding) {
	slices.SortStableFunc(f, func(a, b Finding) int {
		if a.Drifted != b.Drifted {
			if a.Drifted {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Kind+a.Subject, b.Kind+b.Subject)
	})
}
