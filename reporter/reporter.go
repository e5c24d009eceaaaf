// Package reporter writes what audits found: report.md and audit.json for one trace, and
// summary.md and batch.json for a batch, in the shapes of the Python tool troy grew from.
//
// It imports schemas only.
package reporter

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/troy-audit/troy/schemas"
)

// DefaultDir is where reports go when no path is given: logs/YYYY-MM-DD.
func DefaultDir(now time.Time) string {
	return filepath.Join("logs", now.Format("2006-01-02"))
}

// Markdown renders the audit report of one trace.
func Markdown(r *schemas.AuditResult) string {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	_ = writeMarkdown(w, r) // a strings.Builder never fails
	_ = w.Flush()
	return b.String()
}

// writeMarkdown writes the audit report of one trace as it renders it.
func writeMarkdown(b *bufio.Writer, r *schemas.AuditResult) error {
	line := func(format string, args ...any) { fmt.Fprintf(b, format+"\n", args...) }
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
		bullets(b, "\n### Key Actions", s.KeyActions)
		bullets(b, "\n### Concerns", s.Concerns)
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
			bullets(b, "\n**Alternatives:**", e.Alternatives)
			bullets(b, "\n**Risk Factors:**", e.RiskFactors)
			bullets(b, "\n**Data Accessed:**", e.DataAccessed)
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
	return nil
}

func bullets(b io.Writer, heading string, items []string) {
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
// two spaces a level down to MaxIndentDepth, compact below, with numbers as Python's json
// writes them (5.0, all the digits of 10**30, NaN, Infinity), so that the Python tool and
// troy's replay read back the values the trace held.
func EncodeJSON(w io.Writer, v any) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if r, ok := v.(*schemas.AuditResult); ok {
		if err := writeAuditJSON(bw, r, ""); err != nil {
			return err
		}
		if err := bw.WriteByte('\n'); err != nil {
			return err
		}
	} else if err := encodeIndented(bw, v); err != nil {
		return err
	}
	return bw.Flush()
}

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
	if id != "" && len(id) <= maxPathToken && !strings.ContainsAny(id, `/\:*?"<>|`) && id != "." && id != ".." && !strings.HasPrefix(id, ".") {
		return id
	}
	return PathToken(id)
}

// maxPathToken bounds a file name made of an id, well within the 255 bytes a name may
// have once prefixed and suffixed.
const maxPathToken = 128

// PathToken makes an id one safe file name of at most maxPathToken bytes: its subject
// token (letters, digits, - and _ as they are, other bytes as ~ and two hex digits) when
// that fits, else the token's start, "~~" (which no token holds) and a hash of the id, so
// that different ids never share a name.
func PathToken(id string) string {
	tok := schemas.Token(id)
	if len(tok) <= maxPathToken {
		return tok
	}
	sum := sha256.Sum256([]byte(id))
	cut := maxPathToken - 2 - 32
	if i := strings.LastIndexByte(tok[max(cut-2, 0):cut], '~'); i >= 0 {
		cut = max(cut-2, 0) + i // not inside an escape
	}
	return tok[:cut] + "~~" + hex.EncodeToString(sum[:16])
}

// Dest says where WriteAudit writes: "-" is Stdout (nil means the process's own).
type Dest struct {
	Markdown, JSON string
	Stdout         io.Writer
	// Signer signs both files (docs/SECURITY.md, Signed reports); nil writes them unsigned.
	Signer *Signer
}

// WriteAudit writes report.md and audit.json for one result, streaming both, and, when a
// model explained the trace, its raw replies under llm_responses/ beside the report
// (step_<id>.txt and trace_summary.txt), for the audit trail; not when the report goes to
// stdout or a device.
func WriteAudit(r *schemas.AuditResult, d Dest) error {
	r.Normalize()
	var report string // the digest of report.md's signed content
	err := writeTo(d.Markdown, d.Stdout, func(w *bufio.Writer) (err error) {
		report, err = writeSignedMarkdown(w, r, d.Signer)
		return err
	})
	if err != nil {
		return fmt.Errorf("write report %s: %w", d.Markdown, err)
	}
	if regularOrNew(d.Markdown) {
		if err := writeResponses(r, filepath.Join(filepath.Dir(d.Markdown), "llm_responses")); err != nil {
			return fmt.Errorf("write model replies: %w", err)
		}
	}
	if d.Markdown == "-" || !regularOrNew(d.Markdown) {
		report = "" // nothing a verifier could find beside the audit
	}
	err = writeTo(d.JSON, d.Stdout, func(w *bufio.Writer) error {
		if err := writeSignedAuditJSON(w, r, "", d.Signer, report); err != nil {
			return err
		}
		return w.WriteByte('\n')
	})
	if err != nil {
		return fmt.Errorf("write audit.json %s: %w", d.JSON, err)
	}
	return nil
}

// Render returns report.md and audit.json of one result as WriteAudit writes them to two
// files side by side (audit.json's signature naming report.md's digest), without the
// model's raw replies: what a report read back from a deployment is.
func Render(r *schemas.AuditResult, s *Signer) (md, js []byte, err error) {
	r.Normalize()
	var mb, jb bytes.Buffer
	w := bufio.NewWriterSize(&mb, 64<<10)
	report, err := writeSignedMarkdown(w, r, s)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return nil, nil, err
	}
	w = bufio.NewWriterSize(&jb, 64<<10)
	if err := writeSignedAuditJSON(w, r, "", s, report); err != nil {
		return nil, nil, err
	}
	if err := w.WriteByte('\n'); err != nil {
		return nil, nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, nil, err
	}
	return mb.Bytes(), jb.Bytes(), nil
}

// writeSignedMarkdown writes report.md and, with a signer, its signature block; it returns
// the digest of the signed content ("" unsigned), which audit.json's signature names.
func writeSignedMarkdown(w *bufio.Writer, r *schemas.AuditResult, s *Signer) (string, error) {
	if s == nil {
		return "", writeMarkdown(w, r)
	}
	h := sha256.New()
	body := bufio.NewWriterSize(hashWriter{w: w, h: h}, 64<<10)
	if err := writeMarkdown(body, r); err != nil {
		return "", err
	}
	if err := body.Flush(); err != nil {
		return "", err
	}
	report := hex.EncodeToString(h.Sum(nil))
	st := baseStatement(r, "report.md")
	st.Content = report
	_, err := w.WriteString(markdownBlock(s.sign(st)))
	return report, err
}

// regularOrNew reports whether path names a regular file, or none yet.
func regularOrNew(path string) bool {
	if path == "-" {
		return false
	}
	info, err := os.Stat(path)
	return err != nil || info.Mode().IsRegular()
}
