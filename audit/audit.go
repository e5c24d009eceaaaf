// Package audit assembles the audit of one trace in process (evaluated against a compiled
// policy and scored), and runs batches of trace files concurrently through an Auditor,
// writing each trace's reports as it finishes and the batch summary at the end.
//
// It wires ingest, evaluator, scorer and reporter together and holds no rules of its own.
package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/ingest"
	"github.com/troy-audit/troy/reporter"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/scorer"
)

// Result evaluates, scores and assembles the audit of one trace, as the pipeline's
// stages would without explanations. explainNote says why there are none. Rules with a
// model judge are not judged (their rule errors say so): see ResultJudged.
func Result(c *evaluator.Compiled, t *schemas.Trace, explainNote string) *schemas.AuditResult {
	return result(c, t, c.Evaluate(t), explainNote)
}

// ResultJudged is Result with the rules that have a model judge judged by j (see
// evaluator.Compiled.EvaluateJudged). It fails only when ctx ends.
func ResultJudged(ctx context.Context, c *evaluator.Compiled, t *schemas.Trace, explainNote string, j evaluator.Judge) (*schemas.AuditResult, error) {
	ev, err := c.EvaluateJudged(ctx, t, j)
	if err != nil {
		return nil, err
	}
	return result(c, t, ev, explainNote), nil
}

func result(c *evaluator.Compiled, t *schemas.Trace, ev evaluator.Result, explainNote string) *schemas.AuditResult {
	p := c.Policy()
	info := schemas.AuditInfo{PolicyID: p.PolicyID, PolicyHash: c.Hash(), Rules: len(p.Rules),
		Explanations: schemas.ExplanationsOff, ExplanationsNote: explainNote, RuleErrors: ev.RuleErrors}
	r := &schemas.AuditResult{Trace: t, Violations: ev.Violations, RiskScore: scorer.Score(ev.Violations, c.Weights()), Info: &info}
	r.Normalize()
	return r
}

// Auditor audits one trace; a batch audits each of its traces with one.
type Auditor interface {
	Audit(ctx context.Context, t *schemas.Trace) (*schemas.AuditResult, error)
}

// BatchOptions configure a batch.
type BatchOptions struct {
	Dir         string // where reports go
	Concurrency int    // traces audited at once; 0 means one per CPU
	Ingest      ingest.Options
	// Signer signs each trace's report.md and audit.json; nil writes them unsigned.
	Signer *reporter.Signer
	// Progress, when set, is called once per input (trace or skipped input), in input
	// order, from a single goroutine.
	Progress func(Progress)
}

// Progress reports one finished input of a batch.
type Progress struct {
	Name   string // file name, with :line for a .jsonl record
	File   string // the trace's file as given; empty for a skipped input
	Line   int    // the trace's line within a .jsonl file; 0 otherwise
	Result *schemas.AuditResult
	Report string // directory of the trace's reports
	Err    error  // why the input was skipped
	Done   int    // inputs finished so far
}

// Inputs expands command-line arguments into trace files: directories give the trace
// files directly inside them, files are taken as they are. Excluded files are left out.
func Inputs(args []string, exclude []string) ([]string, error) {
	var files []string
	for _, a := range args {
		info, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, unwrapPath(err))
		}
		if !info.IsDir() {
			files = append(files, a)
			continue
		}
		found, err := ingest.Files(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a, unwrapPath(err))
		}
		for _, f := range found {
			if !sameAsAny(f, exclude) {
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no trace files (%s) in %s", strings.Join(ingest.Extensions(), ", "), strings.Join(args, ", "))
	}
	return files, nil
}

func sameAsAny(f string, others []string) bool {
	fi, err := os.Stat(f)
	if err != nil {
		return false
	}
	for _, o := range others {
		if oi, err := os.Stat(o); err == nil && os.SameFile(fi, oi) {
			return true
		}
	}
	return false
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

type job struct {
	seq  int
	raw  ingest.Raw
	dir  string // report directory for a single-trace file; the parent for .jsonl records
	err  error  // the whole file could not be read
	name string
}

type done struct {
	seq    int
	name   string
	file   string
	line   int
	result *schemas.AuditResult
	report string
	err    error
}

// Batch audits every trace in files, concurrently, writing each trace's report.md and
// audit.json under opts.Dir as it finishes, then summary.md and batch.json. Bad files and
// bad lines are skipped with their reason and do not stop the batch.
func Batch(ctx context.Context, a Auditor, files []string, opts BatchOptions) (*reporter.BatchSummary, error) {
	workers := opts.Concurrency
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	bw, err := reporter.NewBatchWriter(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start batch: %w", err)
	}
	// The window bounds how far finished results may run ahead of the oldest unfinished
	// one, and so how many results wait in memory to be written in order.
	window := make(chan struct{}, workers*8)
	jobs := make(chan job, workers)
	results := make(chan done, workers)

	go func() {
		defer close(jobs)
		seq := 0
		send := func(j job) bool {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return false
			}
			j.seq = seq
			seq++
			jobs <- j
			return true
		}
		names := map[string]bool{}
		for _, f := range files {
			dir := filepath.Join(opts.Dir, uniqueName(ingest.Stem(f), names))
			err := ingest.ReadRaw(ctx, f, opts.Ingest, func(raw ingest.Raw) error {
				if !send(job{raw: raw, dir: dir}) {
					return ctx.Err()
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				if !send(job{err: err, name: filepath.Base(f)}) {
					return
				}
			}
			if ctx.Err() != nil {
				return
			}
		}
	}()

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				results <- runJob(ctx, a, j, opts.Signer)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	pending := map[int]done{}
	next := 0
	for d := range results {
		pending[d.seq] = d
		for {
			d, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			<-window
			if d.err != nil {
				bw.Skip(d.name, skipReason(d.err))
			} else if err := bw.Add(d.result, d.name, d.report); err != nil {
				bw.Skip(d.name, err.Error())
				d.err = err
			}
			if opts.Progress != nil {
				opts.Progress(Progress{Name: d.name, File: d.file, Line: d.line, Result: d.result, Report: d.report, Err: d.err, Done: next})
			}
		}
	}
	summary, err := bw.Close()
	if err != nil {
		return summary, err
	}
	return summary, ctx.Err()
}

func runJob(ctx context.Context, a Auditor, j job, sg *reporter.Signer) done {
	if j.err != nil {
		return done{seq: j.seq, name: j.name, err: j.err}
	}
	rec := j.raw.Decode()
	d := done{seq: j.seq, name: rec.Name(), file: rec.File, line: rec.Line}
	if rec.Err != nil {
		d.err = rec.Err
		return d
	}
	r, err := a.Audit(ctx, rec.Trace)
	if err != nil {
		d.err = err
		return d
	}
	d.report = j.dir
	if rec.Line > 0 {
		d.report = filepath.Join(j.dir, fmt.Sprintf("%06d-%s", rec.Line, safeName(rec.Trace.TraceID)))
	}
	if err := reporter.WriteAudit(r, reporter.Dest{Markdown: filepath.Join(d.report, "report.md"), JSON: filepath.Join(d.report, "audit.json"), Signer: sg}); err != nil {
		d.err = err
		return d
	}
	d.result = r
	return d
}

// skipReason is the message without the file name, which the skipped entry already names.
func skipReason(err error) string {
	var ie *ingest.Error
	if errors.As(err, &ie) {
		return ie.Err.Error()
	}
	return err.Error()
}

// uniqueName returns name, or name-2, name-3… when an earlier input already took it.
func uniqueName(name string, taken map[string]bool) string {
	name = safeName(name)
	candidate := name
	for i := 2; taken[candidate]; i++ {
		candidate = fmt.Sprintf("%s-%d", name, i)
	}
	taken[candidate] = true
	return candidate
}

// safeName turns an id into a file name: other characters become '_', and long ids are cut.
func safeName(id string) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, id)
	s = strings.Trim(s, ".")
	if s == "" {
		s = "trace"
	}
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
