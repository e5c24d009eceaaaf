// Package reporter writes what audits found: report.md and audit.json for one trace, and
// summary.md and batch.json for a batch, in the shapes of the Python tool troy grew from.
//
// It imports schemas only.
package reporter

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// DefaultDir is where reports go when no path is given: logs/YYYY-MM-DD.
func DefaultDir(now time.Time) string {
	return filepath.Join("logs", now.Format("2006-01-02"))
}

// Markdown renders the audit report of one trace.
func Markdown(r *schemas.AuditResult) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# Audit Report: %s", r.Trace.AgentName)
	line("\n**Trace ID:** %s", r.Trace.TraceID)
	line("**Risk Score:** %d/100", r.RiskScore)
	line("**Steps Analyzed:** %d", len(r.Trace.Steps))
	line("**Violations Found:** %d", len(r.Violations))
	if info := r.Info; info != nil {
		if info.PolicyID != "" {
			line("**Policy:** %s (%d rules, sha256 %s)", info.PolicyID, info.Rules, short(info.PolicyHash))
		}
		if info.Explanations != "" {
			note := info.Explanations
			if info.ExplanationsNote != "" {
				note += ": " + info.ExplanationsNote
			}
			line("**Explanations:** %s", note)
		}
		if u := info.LLM; u != nil {
			calls := fmt.Sprintf("%d calls, %d from the cache", u.Calls, u.Cached)
			if u.Failed > 0 {
				calls += fmt.Sprintf(", %d failed", u.Failed)
			}
			if u.Skipped > 0 {
				calls += fmt.Sprintf(", %d over budget", u.Skipped)
			}
			line("**Model:** %s (%s; %d prompt and %d completion tokens)", u.Model, calls, u.PromptTokens, u.CompletionTokens)
		}
	}

	if s := r.Summary; s != nil {
		line("\n## Summary")
		if s.Error != "" {
			line("\n_No summary: %s._", s.Error)
		}
		line("\n%s", s.Overview)
		bullets(&b, "\n### Key Actions", s.KeyActions)
		bullets(&b, "\n### Concerns", s.Concerns)
	}

	if len(r.Explanations) > 0 {
		line("\n## Step Analysis")
		for _, e := range r.Explanations {
			line("\n### Step: %s", e.StepID)
			if e.Error != "" {
				line("\n_No explanation: %s._", e.Error)
				continue
			}
			line("\n%s", e.Summary)
			if e.Rationale != "" {
				line("\n**Why:** %s", e.Rationale)
			}
			bullets(&b, "\n**Alternatives:**", e.Alternatives)
			bullets(&b, "\n**Risk Factors:**", e.RiskFactors)
			bullets(&b, "\n**Data Accessed:**", e.DataAccessed)
		}
	}

	line("\n## Policy Violations")
	if len(r.Violations) == 0 {
		line("\nNo policy violations detected.")
	}
	for _, v := range r.Violations {
		line("\n### [%s] %s", strings.ToUpper(v.Severity), v.RuleDescription)
		line("\n- **Rule ID:** %s", v.RuleID)
		line("- **Step:** %s", v.StepID)
		line("- **Details:** %s", v.Details)
	}

	if r.Info != nil && len(r.Info.RuleErrors) > 0 {
		line("\n## Rule Errors")
		line("\nThese rules could not be evaluated at some steps; a failed condition never counts as a violation.")
		line("")
		line("| Rule | Steps failed | First step | First error |")
		line("|------|--------------|------------|-------------|")
		for _, e := range r.Info.RuleErrors {
			line("| %s | %d | %s | %s |", cell(e.RuleID), e.Count, cell(e.FirstStep), cell(e.FirstError))
		}
	}
	return b.String()
}

func bullets(b *strings.Builder, heading string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintln(b, heading)
	for _, it := range items {
		fmt.Fprintf(b, "- %s\n", it)
	}
}

// cell makes text safe inside a markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// JSON renders a value as indented JSON with a final newline, without HTML escaping.
func JSON(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := EncodeJSON(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// EncodeJSON writes a value as indented JSON, as audit.json and batch.json are written:
// numbers as Python's json writes them (5.0, all the digits of 10**30, NaN, Infinity), so
// that the Python tool and troy's replay read back the values the trace held.
func EncodeJSON(w io.Writer, v any) error { return pyjson.Encode(w, v, "  ") }

func writeResponses(r *schemas.AuditResult, dir string) error {
	for _, e := range r.Explanations {
		if e.RawResponse == "" {
			continue
		}
		if err := WriteFile(filepath.Join(dir, "step_"+fileName(e.StepID)+".txt"), []byte(e.RawResponse)); err != nil {
			return err
		}
	}
	if s := r.Summary; s != nil && s.RawResponse != "" {
		return WriteFile(filepath.Join(dir, "trace_summary.txt"), []byte(s.RawResponse))
	}
	return nil
}

// fileName makes a step id safe as a file name: ids are free text and may hold slashes.
func fileName(id string) string {
	if id != "" && !strings.ContainsAny(id, `/\:*?"<>|`) && id != "." && id != ".." && !strings.HasPrefix(id, ".") {
		return id
	}
	return schemas.SubjectToken(id)
}

// WriteFile writes data to path, creating parent directories, through a temporary file
// renamed into place so a reader never sees half a report.
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// A fresh name per attempt, created with the final mode, so no chmod is needed.
	tmp := filepath.Join(dir, "."+filepath.Base(path)+"."+strconv.FormatUint(rand.Uint64(), 36))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// WriteAudit writes report.md and audit.json for one result and, when a model explained
// the trace, its raw replies under llm_responses/ beside the report (step_<id>.txt and
// trace_summary.txt), for the audit trail.
func WriteAudit(r *schemas.AuditResult, mdPath, jsonPath string) error {
	r.Normalize()
	if err := WriteFile(mdPath, []byte(Markdown(r))); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := writeResponses(r, filepath.Join(filepath.Dir(mdPath), "llm_responses")); err != nil {
		return fmt.Errorf("write model replies: %w", err)
	}
	data, err := JSON(r)
	if err != nil {
		return fmt.Errorf("encode audit.json: %w", err)
	}
	if err := WriteFile(jsonPath, data); err != nil {
		return fmt.Errorf("write audit.json: %w", err)
	}
	return nil
}
