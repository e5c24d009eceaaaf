package pipeline

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/schemas"
)

// MaxRuleLabels bounds the distinct rule ids troy_violations_total keeps as label
// values: rule ids come from policies any client may store, so past this many the
// rest are counted under OtherRule, and the series stay bounded.
const MaxRuleLabels = 1000

// OtherRule is the rule label of violations of rules past MaxRuleLabels.
const OtherRule = "other"

// Guard decision outcomes, as troy_guard_decisions_total counts them.
const (
	DecisionAllowed = "allowed" // the step may run
	DecisionBlocked = "blocked" // enforce mode refused it
	DecisionFlagged = "flagged" // monitor or dry-run let through a step enforce mode would block
	DecisionError   = "error"   // no decision: a bad request, no policy, the stream unavailable
)

// Metrics are the counters the components feed. A nil *Metrics counts nothing, so that
// components run without a registry (one-shot runs, tests).
type Metrics struct {
	guardLatency prometheus.Histogram
	decisions    *prometheus.CounterVec
	ruleErrors   *prometheus.CounterVec
	violations   *prometheus.CounterVec
	rules        boundedLabel
	severities   map[string]struct{}
}

// NewMetrics makes the components' counters; Collectors lists them for a registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		guardLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "troy_guard_check_seconds",
			Help:    "Time to answer a guard check, the step's storage included.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troy_guard_decisions_total",
			Help: "Guard checks answered, by outcome: allowed, blocked (enforce mode), flagged (monitor or dry-run let through a step enforce mode would block) or error (no decision).",
		}, []string{"outcome"}),
		// By component and outcome, not by rule: which rule failed is in the decision,
		// audit.json, report.md and ClickHouse.
		ruleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troy_rule_errors_total",
			Help: "Conditions that could not be evaluated at a step: by the guard (outcome blocked, skipped or allowed in monitor and dry-run) and by the evaluator (recorded in the trace's audit).",
		}, []string{"component", "outcome"}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troy_violations_total",
			Help: "Violations in the verdicts of finished traces, by rule and severity; rules past the first 1000 distinct ids are counted as rule \"other\".",
		}, []string{"rule", "severity"}),
		rules:      boundedLabel{max: MaxRuleLabels, seen: map[string]struct{}{}},
		severities: map[string]struct{}{},
	}
	for _, s := range schemas.Severities() {
		m.severities[s] = struct{}{}
	}
	// The series of known labels start at zero, so that rates and alerts see them before
	// the first event.
	for _, o := range []string{DecisionAllowed, DecisionBlocked, DecisionFlagged, DecisionError} {
		m.decisions.WithLabelValues(o)
	}
	for _, o := range []string{"blocked", "skipped", "allowed"} {
		m.ruleErrors.WithLabelValues(Guard, o)
	}
	m.ruleErrors.WithLabelValues(Evaluator, "recorded")
	return m
}

// Collectors lists the counters, for a registry.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.guardLatency, m.decisions, m.ruleErrors, m.violations}
}

func (m *Metrics) guardCheck(d time.Duration, outcome string) {
	if m == nil {
		return
	}
	m.guardLatency.Observe(d.Seconds())
	m.decisions.WithLabelValues(outcome).Inc()
}

func (m *Metrics) ruleError(component, outcome string, n int) {
	if m == nil || n == 0 {
		return
	}
	m.ruleErrors.WithLabelValues(component, outcome).Add(float64(n))
}

func (m *Metrics) violation(rule, severity string) {
	if m == nil {
		return
	}
	if _, ok := m.severities[severity]; !ok {
		severity = OtherRule
	}
	m.violations.WithLabelValues(m.rules.value(rule), severity).Inc()
}

// boundedLabel keeps the first max distinct values of a label and maps the rest to
// OtherRule.
type boundedLabel struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

func (b *boundedLabel) value(v string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) >= b.max || v == OtherRule {
		return OtherRule
	}
	b.seen[v] = struct{}{}
	return v
}

// llmCollectors count the model calls of the explainer (which also answers judge rules);
// without one they stay at zero, so that dashboards find the series.
func llmCollectors(e *explainer.Explainer) []prometheus.Collector {
	read := func(f func(explainer.Counts) int64) func() float64 {
		return func() float64 {
			if e == nil {
				return 0
			}
			return float64(f(e.Counts()))
		}
	}
	call := func(outcome string, f func(explainer.Counts) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "troy_llm_calls_total", Help: "Model calls for explanations and judge rules, by outcome: ok, error (failed after retries), cached (answered from the cache, no call made) or skipped (over the budget).",
			ConstLabels: prometheus.Labels{"outcome": outcome},
		}, read(f))
	}
	tokens := func(kind string, f func(explainer.Counts) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "troy_llm_tokens_total", Help: "Tokens the model's answers cost, by kind: prompt or completion.",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, read(f))
	}
	return []prometheus.Collector{
		call("ok", func(c explainer.Counts) int64 { return c.OK }),
		call("error", func(c explainer.Counts) int64 { return c.Failed }),
		call("cached", func(c explainer.Counts) int64 { return c.Cached }),
		call("skipped", func(c explainer.Counts) int64 { return c.Skipped }),
		tokens("prompt", func(c explainer.Counts) int64 { return c.PromptTokens }),
		tokens("completion", func(c explainer.Counts) int64 { return c.CompletionTokens }),
	}
}
