package reporter

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/troy-audit/troy/schemas"
)

// BatchRow is one audited trace in a batch summary.
type BatchRow struct {
	TraceID    string `json:"trace_id"`
	Agent      string `json:"agent_name"`
	Source     string `json:"source"`
	Steps      int    `json:"steps"`
	Violations int    `json:"violations"`
	RiskScore  int    `json:"risk_score"`
	RuleErrors int    `json:"rule_errors,omitempty"`
	Report     string `json:"report"`
}

// BatchSummary is what a batch wrote, for the command line and scripts.
type BatchSummary struct {
	Dir       string                `json:"dir"`
	Summary   string                `json:"summary"`
	BatchJSON string                `json:"batch_json"`
	Rows      []BatchRow            `json:"results"`
	Skipped   []schemas.SkippedFile `json:"skipped"`
}

// BatchWriter streams batch.json as results arrive, so a batch of any size holds only
// summary rows in memory, and writes summary.md when closed. Results are written in the
// order Add is called.
type BatchWriter struct {
	dir     string
	tmp     *os.File
	w       *bufio.Writer
	n       int
	rows    []BatchRow
	skipped []schemas.SkippedFile
	err     error
}

// NewBatchWriter starts batch.json in dir.
func NewBatchWriter(dir string) (*BatchWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".batch.json.*")
	if err != nil {
		return nil, err
	}
	if err := tmp.Chmod(0o644); err != nil { // as every other report; CreateTemp makes it 0600
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	bw := &BatchWriter{dir: dir, tmp: tmp, w: bufio.NewWriterSize(tmp, 256<<10)}
	_, bw.err = bw.w.WriteString("{\n  \"results\": [")
	return bw, nil
}

// Add appends one result; reportDir is where its report.md and audit.json were written.
func (bw *BatchWriter) Add(r *schemas.AuditResult, source, reportDir string) error {
	if bw.err != nil {
		return bw.err
	}
	r.Normalize()
	sep := "\n    "
	if bw.n > 0 {
		sep = ",\n    "
	}
	// The result is indented as it sits inside batch.json, and streamed.
	if _, err := bw.w.WriteString(sep); err != nil {
		bw.err = err
		return err
	}
	if err := writeAuditJSON(bw.w, r, "    "); err != nil {
		bw.err = err
		return err
	}
	bw.n++
	row := BatchRow{
		TraceID:    r.Trace.TraceID,
		Agent:      r.Trace.AgentName,
		Source:     source,
		Steps:      len(r.Trace.Steps),
		Violations: len(r.Violations),
		RiskScore:  r.RiskScore,
		Report:     filepath.Join(reportDir, "report.md"),
	}
	if r.Info != nil {
		for _, e := range r.Info.RuleErrors {
			row.RuleErrors += e.Count
		}
	}
	bw.rows = append(bw.rows, row)
	return nil
}

// Skip records an input that could not be audited.
func (bw *BatchWriter) Skip(file, reason string) {
	bw.skipped = append(bw.skipped, schemas.SkippedFile{File: file, Error: reason})
}

// Close finishes batch.json and writes summary.md.
func (bw *BatchWriter) Close() (*BatchSummary, error) {
	defer os.Remove(bw.tmp.Name()) // a no-op once renamed
	if bw.err == nil {
		end := "]"
		if bw.n > 0 {
			end = "\n  ]"
		}
		skipped := bw.skipped
		if skipped == nil {
			skipped = []schemas.SkippedFile{}
		}
		data, err := JSON(skipped)
		if err != nil {
			bw.err = err
		} else {
			body := strings.ReplaceAll(strings.TrimRight(string(data), "\n"), "\n", "\n  ")
			_, bw.err = bw.w.WriteString(end + ",\n  \"skipped\": " + body + "\n}\n")
		}
	}
	if bw.err == nil {
		bw.err = bw.w.Flush()
	}
	if cerr := bw.tmp.Close(); bw.err == nil {
		bw.err = cerr
	}
	s := &BatchSummary{
		Dir:       bw.dir,
		Summary:   filepath.Join(bw.dir, "summary.md"),
		BatchJSON: filepath.Join(bw.dir, "batch.json"),
		Rows:      bw.rows,
		Skipped:   bw.skipped,
	}
	if bw.err != nil {
		return s, fmt.Errorf("write batch.json: %w", bw.err)
	}
	if err := os.Rename(bw.tmp.Name(), s.BatchJSON); err != nil {
		return s, fmt.Errorf("write batch.json: %w", err)
	}
	if err := WriteFile(s.Summary, []byte(SummaryMarkdown(s))); err != nil {
		return s, fmt.Errorf("write summary.md: %w", err)
	}
	return s, nil
}

// SummaryMarkdown renders summary.md.
func SummaryMarkdown(s *BatchSummary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Batch Audit Summary\n")
	fmt.Fprintf(&b, "\n**Traces Processed:** %d\n", len(s.Rows))
	fmt.Fprintf(&b, "**Traces Skipped:** %d\n", len(s.Skipped))
	fmt.Fprintf(&b, "\n## Results\n\n")
	fmt.Fprintf(&b, "| Trace | Agent | Steps | Violations | Risk Score | Report |\n")
	fmt.Fprintf(&b, "|-------|-------|-------|------------|------------|--------|\n")
	for _, r := range s.Rows {
		rel, err := filepath.Rel(s.Dir, r.Report)
		if err != nil {
			rel = r.Report
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | [report](<%s>) |\n", cell(r.TraceID), cell(r.Agent), r.Steps, r.Violations, r.RiskScore, filepath.ToSlash(rel))
	}
	if len(s.Skipped) > 0 {
		fmt.Fprintf(&b, "\n## Skipped Files\n")
		for _, sk := range s.Skipped {
			fmt.Fprintf(&b, "- **%s**: %s\n", sk.File, sk.Error)
		}
	}
	return b.String()
}
