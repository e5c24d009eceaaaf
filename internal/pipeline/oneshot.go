package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/internal/bus"
)

// AuditorOptions configure the auditor of a one-shot command, local or dialled.
type AuditorOptions struct {
	// Bus is the deployment's connection for Dial: its URL and credentials. OpenLocal
	// takes only its Name and Logger, for the embedded server it starts.
	Bus bus.Options
	// Explain says whether and how a local pipeline explains traces; a deployment
	// explains with its own explainer.
	Explain Explain
	// CacheDir keeps a local pipeline's explanation cache on disk there, so that it
	// outlives the run; empty keeps it in memory.
	CacheDir string
	// Timeout bounds the wait for one trace's results. Zero means none locally, where a
	// trace the stages give up or leave idle fails at once, and DialTimeout with Dial.
	Timeout time.Duration
	// Logger receives the local explainer's warnings; nil discards them.
	Logger *slog.Logger
}

// DialTimeout is how long an auditor of a deployment waits for one trace's results by
// default: a deployment busy with other traces cannot tell that one was lost.
const DialTimeout = 10 * time.Minute

// OpenLocal opens a one-shot pipeline in this process: an embedded in-memory NATS server,
// the evaluator, scorer and explainer stages, and an auditor of traces under the policy c.
// Close releases them all. When nothing needs the stages (no model explains, no rule has a
// model judge), the auditor evaluates and scores in this process instead, with the same
// results and failures, and starts no server: most of a short audit's time was starting
// one.
func OpenLocal(ctx context.Context, c *evaluator.Compiled, opts AuditorOptions) (*Auditor, error) {
	if opts.Explain.Model == nil && !c.HasJudge() {
		return &Auditor{Info: InfoOf(c), Timeout: opts.Timeout, local: c, note: opts.Explain.Note}, nil
	}
	bo := bus.Options{Name: opts.Bus.Name, Logger: opts.Bus.Logger, Memory: true}
	if opts.Explain.Model != nil && !opts.Explain.NoCache {
		bo.CacheDir = opts.CacheDir
	}
	b, err := bus.Open(ctx, bo)
	if err != nil {
		return nil, err
	}
	pol := NewPolicies(b)
	hash, err := pol.Put(ctx, c)
	if err != nil {
		b.Close()
		return nil, err
	}
	pc := Config{Only: []string{Evaluator, Explainer}, ExplainNote: opts.Explain.Note, NoAlerts: true}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if pc.Explain = NewExplainer(b, opts.Explain, log); pc.Explain != nil {
		// Enough traces explained at once to keep every allowed request busy.
		pc.Workers = max(4, opts.Explain.Model.Concurrency)
	}
	p, err := New(b, pol, pc)
	if err != nil {
		b.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	stop := func() {
		cancel()
		<-done
		b.Close()
	}
	client, err := NewClient(ctx, b, hash, ClientOptions{Purge: true})
	if err != nil {
		stop()
		return nil, err
	}
	return &Auditor{Client: client, Info: InfoOf(c), Timeout: opts.Timeout, release: stop}, nil
}

// Dial audits through the running deployment at opts.Bus.URL, whose stages do the work
// (its explainer explains). The policy c goes to the deployment's policy bucket and the
// traces name its revision. Close releases the connection.
func Dial(ctx context.Context, c *evaluator.Compiled, opts AuditorOptions) (*Auditor, error) {
	bo := opts.Bus
	if bo.URL == "" {
		return nil, errors.New("dial a deployment: no NATS URL")
	}
	bo.Client, bo.Memory = true, false
	b, err := bus.Open(ctx, bo)
	if err != nil {
		return nil, err
	}
	hash, err := NewPolicies(b).Put(ctx, c)
	if err != nil {
		b.Close()
		return nil, err
	}
	client, err := NewClient(ctx, b, hash, ClientOptions{})
	if err != nil {
		b.Close()
		return nil, err
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DialTimeout
	}
	return &Auditor{Client: client, Info: InfoOf(c), Timeout: timeout, release: b.Close}, nil
}
