package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/explainer"
	"github.com/troy-audit/troy/internal/pipeline/evaluate"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
)

// Component names, as `troyctl serve --only` takes them.
const (
	Evaluator = "evaluator"
	Explainer = "explainer"
	Reporter  = "reporter"
	Sink      = "sink"
)

// Components lists the components: the stages in pipeline order, the ClickHouse sink, then
// the guard service.
func Components() []string { return []string{Evaluator, Explainer, Reporter, Sink, Guard} }

// retiredScorer is the component that scored evaluated traces before the evaluator did.
// --only still takes its name, so that deployments naming it run unchanged; it runs
// nothing, and its durable consumer is deleted when the evaluator starts.
const retiredScorer = "scorer"

// Config chooses and tunes the components to run.
type Config struct {
	Only []string // components to run; empty runs all
	// ReportDir is where the reporter also writes report.md and audit.json of each trace;
	// empty writes none (reports are rendered from the streams when asked for).
	ReportDir string
	Workers   int // events handled at once per component; zero means 4
	// Partitions, when above zero, has evaluators share the steps stream: its traces
	// are spread over this many partitions, which the evaluator processes divide among
	// them, so that each trace is evaluated by one process at a time. Every evaluator of
	// a deployment must have the same number. Zero consumes the stream whole.
	Partitions  int
	IdleTimeout time.Duration // close traces without events for this long; zero means never
	// Explain asks a model about each finished trace; nil passes traces on unexplained,
	// with ExplainNote saying why.
	Explain     *explainer.Explainer
	ExplainNote string
	// Store receives every step and result in ClickHouse; nil runs no sink.
	Store *warehouse.Store
	// SinkBatch and SinkWait end a sink batch by size and by age; zero means 50000 and 1s.
	SinkBatch int
	SinkWait  time.Duration
	// NoAlerts leaves out the evaluator's real-time violation events, for one-shot runs
	// that nobody watches; each trace's verdict still comes at its end.
	NoAlerts bool
	// Restart says what happens when a component fails; the zero value stops the
	// pipeline at the first failure.
	Restart Restart
	Logger  *slog.Logger // nil logs nothing
	// OnRuleError overrides the policies' on_rule_error in the guard service: "block" or
	// "skip"; empty keeps each policy's (default block).
	OnRuleError string
	// Signer signs the reporter's report.md and audit.json; nil writes them unsigned.
	Signer *reporter.Signer
}

// Pipeline is a set of running components and their counters.
type Pipeline struct {
	b     *bus.Bus
	pol   *Policies
	cfg   Config
	Eval  *evaluate.Stage
	Guard *GuardService   // nil unless the guard runs
	Sink  *warehouse.Sink // nil unless a store is configured
	Stats map[string]*bus.Stats
	// Metrics counts guard decisions, rule errors and violations; nil counts nothing.
	// Set before Run.
	Metrics *Metrics
	ready   chan struct{}
	sup     *supervisor
	reports *Reports
}

// New prepares the components of cfg on a bus.
func New(b *bus.Bus, pol *Policies, cfg Config) (*Pipeline, error) {
	if slices.Contains(cfg.Only, retiredScorer) {
		cfg.Only = slices.DeleteFunc(slices.Clone(cfg.Only), func(c string) bool { return c == retiredScorer })
		if len(cfg.Only) == 0 {
			return nil, fmt.Errorf("component scorer is part of the evaluator: run the evaluator instead")
		}
		if cfg.Logger != nil {
			cfg.Logger.Warn("component scorer is part of the evaluator: nothing to run for it")
		}
	}
	if len(cfg.Only) == 0 {
		for _, c := range Components() {
			if c != Sink || cfg.Store != nil {
				cfg.Only = append(cfg.Only, c)
			}
		}
	}
	for _, c := range cfg.Only {
		if !slices.Contains(Components(), c) {
			return nil, fmt.Errorf("unknown component %q: choose from %s", c, strings.Join(Components(), ", "))
		}
		if c == Sink && cfg.Store == nil {
			return nil, fmt.Errorf("the sink needs a ClickHouse database: pass --clickhouse DSN")
		}
	}
	if cfg.OnRuleError != "" && !slices.Contains(schemas.OnRuleErrors(), cfg.OnRuleError) {
		return nil, fmt.Errorf("on rule error %q: choose %s", cfg.OnRuleError, strings.Join(schemas.OnRuleErrors(), " or "))
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	p := &Pipeline{b: b, pol: pol, cfg: cfg, Stats: map[string]*bus.Stats{}, ready: make(chan struct{}), sup: newSupervisor(cfg.Restart, cfg.Logger)}
	p.reports = NewReports(b, pol.Info, cfg.Signer)
	for _, c := range cfg.Only {
		if c != Guard {
			p.Stats[c] = &bus.Stats{}
		}
	}
	var opts []evaluate.StageOption
	if cfg.NoAlerts {
		opts = append(opts, evaluate.WithoutAlerts())
	}
	if j := NewJudge(cfg.Explain); j != nil {
		opts = append(opts, evaluate.WithJudge(j))
	}
	p.Eval = evaluate.NewStage(pol.Compiled, b.ReadSteps, append(opts, evaluate.WithFirst(b.FirstStep), evaluate.WithVerdicts(p.countVerdict))...)
	if cfg.Store != nil {
		p.Sink = warehouse.NewSink(cfg.Store, b.ReadSteps, pol.RuleInfo, cfg.Logger)
	}
	return p, nil
}

// IdleCloser is the name under which Health reports the evaluator's closing of idle traces.
const IdleCloser = "evaluator-idle"

// Run runs the components until ctx ends, then lets them finish the events in hand. A
// component that fails is restarted or stops the pipeline, as cfg.Restart says; Run then
// returns its error.
func (p *Pipeline) Run(ctx context.Context) error {
	components := map[string]func(context.Context) error{}
	for _, name := range p.cfg.Only {
		switch name {
		case Sink:
			components[name] = p.runSink
		case Evaluator:
			c, h := p.component(name)
			components[name] = func(ctx context.Context) error {
				if _, err := p.b.DeleteConsumer(ctx, bus.ResultsStream, retiredScorer); err != nil {
					return err
				}
				if p.cfg.Partitions > 0 {
					return p.b.ConsumePartitioned(ctx, p.partitioned(c), h, p.Stats[name])
				}
				return p.b.Consume(ctx, c, h, p.Stats[name])
			}
		case Reporter:
			c, h := p.component(name)
			components[name] = func(ctx context.Context) error {
				// The service is up before the stage reports anything, so that a report
				// whose reported event was seen can be asked for.
				stop, err := p.reports.Start()
				if err != nil {
					return err
				}
				err = p.b.Consume(ctx, c, h, p.Stats[name])
				return errors.Join(err, stop())
			}
		case Guard:
			p.Guard = NewGuardService(p.b, p.pol, p.cfg.Logger, p.Metrics)
			p.Guard.OnRuleError = p.cfg.OnRuleError
			p.Guard.Judge = NewJudge(p.cfg.Explain)
			components[name] = func(ctx context.Context) error { return p.Guard.Serve(ctx, p.cfg.IdleTimeout) }
		default:
			c, h := p.component(name)
			components[name] = func(ctx context.Context) error { return p.b.Consume(ctx, c, h, p.Stats[name]) }
		}
	}
	if slices.Contains(p.componentNames(), IdleCloser) {
		components[IdleCloser] = p.closeIdle
	}
	// Stream consumers lose nothing by starting late (events wait in the streams); the
	// guard answers requests, so the pipeline is ready once it does.
	go func() {
		if p.Guard != nil {
			select {
			case <-p.Guard.Ready():
			case <-ctx.Done():
				return
			}
		}
		close(p.ready)
	}()
	return p.sup.run(ctx, components)
}

// componentNames lists what Run supervises: the components, and the idle closer.
func (p *Pipeline) componentNames() []string {
	names := slices.Clone(p.cfg.Only)
	if slices.Contains(p.cfg.Only, Evaluator) && p.cfg.IdleTimeout > 0 {
		names = append(names, IdleCloser)
	}
	return names
}

// Health returns the state of each component that runs.
func (p *Pipeline) Health() map[string]ComponentHealth { return p.sup.Health() }

// Ready is closed once every component that answers requests does.
func (p *Pipeline) Ready() <-chan struct{} { return p.ready }

func (p *Pipeline) component(name string) (bus.Consumer, bus.Handler) {
	c := bus.Consumer{Name: name, Workers: p.cfg.Workers}
	switch name {
	case Evaluator:
		c.Stream = bus.StepsStream
		return c, p.Eval.Handle
	case Explainer:
		c.Stream, c.Filter = bus.ResultsStream, []string{event.ResultFilter(event.KindScored)}
		return c, explainer.NewStage(p.cfg.Explain, p.cfg.ExplainNote, p.b).Handle
	}
	c.Stream, c.Filter = bus.ResultsStream, []string{event.ResultFilter(event.KindExplained)}
	return c, newReportStage(p.cfg.ReportDir, p.reports).Handle
}

// stepsPattern is the subject pattern of a trace's events: its agent and trace ids
// choose its partition.
const stepsPattern = event.StepsPrefix + ".*.*"

// partitioned is the evaluator's consumer spread over partitions: a partition handed
// over takes the state of its traces with it.
func (p *Pipeline) partitioned(c bus.Consumer) bus.Partitioned {
	n := p.cfg.Partitions
	return bus.Partitioned{Consumer: c, Subjects: stepsPattern, Partitions: n, Released: func(part int) {
		p.Eval.Forget(func(subject string) bool { return bus.PartitionOf(stepsPattern, subject, n) == part })
	}}
}

// countVerdict counts the rule errors and violations of a trace the evaluator finishes
// (a redelivered end may count them again: the counters are for alerting, audit.json is
// the record).
func (p *Pipeline) countVerdict(violations []schemas.Violation, ruleErrors []schemas.RuleError) {
	m := p.Metrics
	if m == nil {
		return
	}
	n := 0
	for _, r := range ruleErrors {
		n += r.Count
	}
	m.ruleError(Evaluator, "recorded", n)
	for _, v := range violations {
		m.violation(v.RuleID, v.Severity)
	}
}

// closeIdle ends traces that have had no event for the idle timeout, by publishing their
// end on their subject, so every stage sees it after the trace's last step.
func (p *Pipeline) closeIdle(ctx context.Context) error {
	tick := time.NewTicker(max(p.cfg.IdleTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			for _, e := range p.Eval.Idle(p.cfg.IdleTimeout) {
				if err := p.b.Publish(ctx, e); err != nil && ctx.Err() == nil {
					return err
				}
			}
		}
	}
}

// Sink consumer names: one durable consumer per stream.
const (
	SinkSteps   = "sink-steps"
	SinkResults = "sink-results"
)

// runSink stores both streams' events in ClickHouse, in batches.
func (p *Pipeline) runSink(ctx context.Context) error {
	var results []string
	for _, k := range warehouse.Kinds() {
		if k != event.KindStep && k != event.KindOutput {
			results = append(results, event.ResultFilter(k))
		}
	}
	consumers := []bus.BatchConsumer{
		{Name: SinkSteps, Stream: bus.StepsStream, MaxBatch: p.cfg.SinkBatch, MaxWait: p.cfg.SinkWait},
		{Name: SinkResults, Stream: bus.ResultsStream, Filter: results, MaxBatch: p.cfg.SinkBatch, MaxWait: p.cfg.SinkWait},
	}
	// The two consumers are one component: when one fails, the other is stopped too, so
	// that both are restarted together.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(consumers))
	for _, c := range consumers {
		go func() {
			err := p.b.ConsumeBatches(ctx, c, p.Sink.Write, p.Stats[Sink])
			if err != nil {
				cancel()
			}
			errs <- err
		}()
	}
	var err error
	for range consumers {
		err = errors.Join(err, <-errs)
	}
	return err
}
