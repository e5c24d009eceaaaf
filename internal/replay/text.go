package replay

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// severityMark is one character per severity, for the timeline strip.
var severityMark = map[string]byte{
	schemas.SeverityCritical: 'C', schemas.SeverityHigh: 'H', schemas.SeverityMedium: 'M', schemas.SeverityLow: 'L', "": '.',
}

// Timeline is one character per step: its worst violation's severity, or '.'. A trace
// longer than width is folded: each character stands for several steps and shows the
// worst among them.
func (s *Session) Timeline(width int) string {
	n := s.Steps()
	if width <= 0 || n <= width {
		width = n
	}
	out := make([]byte, width)
	order := map[string]int{"": 99}
	for i, sev := range schemas.Severities() {
		order[sev] = i
	}
	for c := range width {
		lo, hi := c*n/width, (c+1)*n/width
		worst := ""
		for i := lo; i < max(hi, lo+1) && i < n; i++ {
			if w := s.Worst(s.Step(i).StepID); order[w] < order[worst] {
				worst = w
			}
		}
		out[c] = severityMark[worst]
	}
	return string(out)
}

// TimelineColumn is the column of the timeline that shows step i.
func (s *Session) TimelineColumn(i, width int) int {
	n := s.Steps()
	if width <= 0 || n <= width {
		return i
	}
	return i * width / n
}

// compact renders a value as one line of JSON.
func compact(v any) string {
	b, err := pyjson.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// StepLines renders a step: its fields, explanation and violations, and what a
// re-evaluation changed there.
func (s *Session) StepLines(i int) []string {
	st := s.Step(i)
	lines := []string{
		fmt.Sprintf("Step %d/%d  %s  %s", i+1, s.Steps(), st.StepID, st.Type),
		"  description: " + st.Description,
		"  input:       " + compact(st.Input),
		"  output:      " + compact(st.Output),
		"  metadata:    " + compact(st.Metadata),
	}
	if st.Timestamp != nil {
		lines = append(lines, "  timestamp:   "+*st.Timestamp)
	}
	if e := s.Explanation(st.StepID); e != nil {
		lines = append(lines, "  explanation: "+e.Summary)
		if e.Rationale != "" {
			lines = append(lines, "  rationale:   "+e.Rationale)
		}
		for _, r := range e.RiskFactors {
			lines = append(lines, "  risk factor: "+r)
		}
		if e.Error != "" {
			lines = append(lines, "  explanation error: "+e.Error)
		}
	}
	vs := s.Violations(st.StepID)
	if len(vs) == 0 {
		lines = append(lines, "  violations:  none")
	}
	for _, v := range vs {
		lines = append(lines, fmt.Sprintf("  violation:   [%s] %s: %s", strings.ToUpper(v.Severity), v.RuleID, v.RuleDescription))
		if v.Details != "" {
			lines = append(lines, "               "+v.Details)
		}
	}
	if r := s.Reeval; r != nil {
		for _, v := range r.Added[st.StepID] {
			lines = append(lines, fmt.Sprintf("  + with %s: [%s] %s", r.Policy, strings.ToUpper(v.Severity), v.RuleID))
		}
		for _, v := range r.Removed[st.StepID] {
			lines = append(lines, fmt.Sprintf("  - with %s: [%s] %s", r.Policy, strings.ToUpper(v.Severity), v.RuleID))
		}
	}
	return lines
}

// SummaryLines renders the trace summary view.
func (s *Session) SummaryLines() []string {
	a := s.Audit
	lines := []string{
		fmt.Sprintf("Trace %s (agent %s): %d steps, risk %d/100, %d violation(s)", a.Trace.TraceID, a.Trace.AgentName, s.Steps(), a.RiskScore, len(a.Violations)),
	}
	if len(a.Trace.Metadata) > 0 {
		lines = append(lines, "  metadata: "+compact(a.Trace.Metadata))
	}
	if a.Info != nil && a.Info.PolicyID != "" {
		lines = append(lines, fmt.Sprintf("  policy:   %s (%d rules)", a.Info.PolicyID, a.Info.Rules))
	}
	if sm := a.Summary; sm != nil {
		lines = append(lines, "  overview: "+sm.Overview)
		for _, k := range sm.KeyActions {
			lines = append(lines, "  key action: "+k)
		}
		for _, c := range sm.Concerns {
			lines = append(lines, "  concern:  "+c)
		}
	} else {
		lines = append(lines, "  no summary (the audit was made without explanations)")
	}
	counts := map[string]int{}
	for _, v := range a.Violations {
		counts[v.Severity]++
	}
	var parts []string
	for _, sev := range schemas.Severities() {
		if counts[sev] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[sev], sev))
		}
	}
	if len(parts) > 0 {
		lines = append(lines, "  by severity: "+strings.Join(parts, ", "))
	}
	return append(lines, s.ReevalLines()...)
}

// ViolationLines renders the violations view: every violation in step order; after a
// re-evaluation, the new policy's.
func (s *Session) ViolationLines() []string {
	title, vs := "Violations", s.Audit.Violations
	if r := s.Reeval; r != nil {
		title, vs = "Violations with "+r.Policy, r.Violations
	}
	pos := s.positions()
	vs = slices.Clone(vs)
	slices.SortStableFunc(vs, func(a, b schemas.Violation) int { return pos[a.StepID] - pos[b.StepID] })
	lines := []string{fmt.Sprintf("%s (%d)", title, len(vs))}
	for _, v := range vs {
		lines = append(lines, fmt.Sprintf("  step %d %-8s [%s] %s: %s", pos[v.StepID]+1, v.StepID, strings.ToUpper(v.Severity), v.RuleID, v.RuleDescription))
	}
	if len(vs) == 0 {
		lines = append(lines, "  none")
	}
	return lines
}

// positions maps each step id to the position of its first step.
func (s *Session) positions() map[string]int {
	pos := map[string]int{}
	for i, st := range s.Audit.Trace.Steps {
		if _, ok := pos[st.StepID]; !ok {
			pos[st.StepID] = i
		}
	}
	return pos
}

// ReevalLines renders the re-evaluation's difference, if there is one.
func (s *Session) ReevalLines() []string {
	r := s.Reeval
	if r == nil {
		return nil
	}
	added, removed := r.Changed()
	lines := []string{"", fmt.Sprintf("Re-evaluated with %s: risk %d → %d (%+d); %d violation(s) added, %d removed",
		r.Policy, r.OldRisk, r.NewRisk, r.NewRisk-r.OldRisk, added, removed)}
	pos := s.positions()
	var ids []string
	for id := range r.Added {
		ids = append(ids, id)
	}
	for id := range r.Removed {
		if _, ok := r.Added[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(a, b int) bool { return pos[ids[a]] < pos[ids[b]] })
	for _, id := range ids {
		for _, v := range r.Added[id] {
			lines = append(lines, fmt.Sprintf("  step %d %-8s + [%s] %s", pos[id]+1, id, strings.ToUpper(v.Severity), v.RuleID))
		}
		for _, v := range r.Removed[id] {
			lines = append(lines, fmt.Sprintf("  step %d %-8s - [%s] %s", pos[id]+1, id, strings.ToUpper(v.Severity), v.RuleID))
		}
	}
	return lines
}

// Print writes the whole replay: the summary, the timeline, every step, the violations,
// and the re-evaluation. The output is plain text in a stable order.
func Print(w io.Writer, s *Session) error {
	var b strings.Builder
	b.WriteString("Replay of " + s.Source + "\n\n")
	for _, l := range s.SummaryLines() {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "\nTimeline  %s  (C critical, H high, M medium, L low, . none)\n", s.Timeline(0))
	for i := range s.Steps() {
		b.WriteString("\n")
		for _, l := range s.StepLines(i) {
			b.WriteString(l + "\n")
		}
	}
	b.WriteString("\n")
	for _, l := range s.ViolationLines() {
		b.WriteString(l + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
