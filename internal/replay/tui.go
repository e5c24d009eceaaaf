package replay

import (
	"bytes"
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// View modes.
const (
	viewStep       = "step"
	viewDetail     = "detail"
	viewSummary    = "summary"
	viewViolations = "violations"
	viewHelp       = "help"
)

// Model is the terminal UI's state; Update and View are pure, so tests drive them with
// key messages and read the screen.
type Model struct {
	s             *Session
	cur           int
	mode          string
	scroll        int
	width, height int
	searching     bool
	query         string
	lastQuery     string
	message       string
}

// NewModel starts at the first step, in a terminal of the given size until the terminal
// says otherwise.
func NewModel(s *Session, width, height int) Model {
	return Model{s: s, mode: viewStep, width: width, height: height}
}

// Current is the position of the step shown.
func (m Model) Current() int { return m.cur }

// Mode is the view shown.
func (m Model) Mode() string { return m.mode }

// Init does nothing: the audit is loaded before the UI starts.
func (m Model) Init() tea.Cmd { return nil }

// Update handles keys and terminal resizes.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tea.KeyPressMsg:
		if m.searching {
			return m.searchKey(msg), nil
		}
		return m.key(msg.String())
	}
	return m, nil
}

func (m Model) key(k string) (tea.Model, tea.Cmd) {
	m.message = ""
	last := m.s.Steps() - 1
	move := func(to int) {
		m.cur, m.scroll = max(0, min(to, last)), 0
		if m.mode != viewStep && m.mode != viewDetail {
			m.mode = viewStep
		}
	}
	switch k {
	case "q", "ctrl+c":
		return m, tea.Quit
	case "right", "n", "l":
		move(m.cur + 1)
	case "left", "p", "h":
		move(m.cur - 1)
	case "g", "home":
		move(0)
	case "G", "end":
		move(last)
	case "j":
		if next := m.s.NextViolation(m.cur, 1); next != m.cur {
			move(next)
		} else {
			m.message = "no violation after this step"
		}
	case "k":
		if prev := m.s.NextViolation(m.cur, -1); prev != m.cur {
			move(prev)
		} else {
			m.message = "no violation before this step"
		}
	case "s":
		m.toggle(viewSummary)
	case "v":
		m.toggle(viewViolations)
	case "d":
		m.toggle(viewDetail)
	case "?":
		m.toggle(viewHelp)
	case "esc":
		m.mode, m.scroll = viewStep, 0
	case "down":
		m.scroll++
	case "up":
		m.scroll = max(0, m.scroll-1)
	case "pgdown", "space":
		m.scroll += max(1, m.bodyHeight()-1)
	case "pgup":
		m.scroll = max(0, m.scroll-max(1, m.bodyHeight()-1))
	case "/":
		m.searching, m.query = true, ""
	}
	return m, nil
}

func (m *Model) toggle(mode string) {
	if m.mode == mode {
		m.mode = viewStep
	} else {
		m.mode = mode
	}
	m.scroll = 0
}

func (m Model) searchKey(msg tea.KeyPressMsg) Model {
	switch msg.String() {
	case "esc":
		m.searching = false
	case "enter":
		m.searching = false
		q := m.query
		if q == "" {
			q = m.lastQuery
		}
		if q == "" {
			return m
		}
		m.lastQuery = q
		if p := m.s.Search(q, m.cur); p >= 0 {
			m.cur, m.scroll, m.mode = p, 0, viewStep
			m.message = fmt.Sprintf("found %q at step %d", q, p+1)
		} else {
			m.message = fmt.Sprintf("%q is in no step's description or input", q)
		}
	case "backspace":
		if r := []rune(m.query); len(r) > 0 {
			m.query = string(r[:len(r)-1])
		}
	default:
		if msg.Text != "" {
			m.query += msg.Text
		}
	}
	return m
}

// chrome is the lines around the body: header, timeline, marker, rule, footer.
const chrome = 5

func (m Model) bodyHeight() int { return max(1, m.height-chrome) }

var (
	headerStyle = lipgloss.NewStyle().Bold(true)
	dimStyle    = lipgloss.NewStyle().Faint(true)
	sevStyle    = map[byte]lipgloss.Style{
		'C': lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true),
		'H': lipgloss.NewStyle().Foreground(lipgloss.Color("208")),
		'M': lipgloss.NewStyle().Foreground(lipgloss.Color("11")),
		'L': lipgloss.NewStyle().Foreground(lipgloss.Color("12")),
		'.': lipgloss.NewStyle().Faint(true),
	}
)

// View renders the screen.
func (m Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	return v
}

// Render is the screen as text, with colours.
func (m Model) Render() string {
	w := max(20, m.width)
	a := m.s.Audit
	var b strings.Builder
	head := fmt.Sprintf("troy replay  %s (%s)  step %d/%d  risk %d/100", a.Trace.TraceID, a.Trace.AgentName, m.cur+1, m.s.Steps(), a.RiskScore)
	if r := m.s.Reeval; r != nil {
		head += fmt.Sprintf(" → %d with %s", r.NewRisk, r.Policy)
	}
	b.WriteString(headerStyle.Render(ansi.Truncate(head, w, "…")) + "\n")

	stripWidth := max(1, w-2)
	strip := m.s.Timeline(stripWidth)
	b.WriteString(" ")
	for i := 0; i < len(strip); i++ {
		b.WriteString(sevStyle[strip[i]].Render(string(strip[i])))
	}
	b.WriteString("\n " + strings.Repeat(" ", m.s.TimelineColumn(m.cur, stripWidth)) + "^\n")
	b.WriteString(dimStyle.Render(strings.Repeat("─", w)) + "\n")

	var lines []string
	for _, l := range m.body() {
		lines = append(lines, strings.Split(ansi.Wrap(l, w, ""), "\n")...)
	}
	h := m.bodyHeight()
	top := min(m.scroll, max(0, len(lines)-h))
	shown := lines[top:min(len(lines), top+h)]
	for _, l := range shown {
		b.WriteString(l + "\n")
	}
	for range h - len(shown) {
		b.WriteString("\n")
	}
	switch {
	case m.searching:
		b.WriteString("/" + m.query + "█")
	case m.message != "":
		b.WriteString(m.message)
	default:
		hint := "→/n next  ←/p prev  j/k violations  s summary  v violations  d detail  / search  ? help  q quit"
		if top+h < len(lines) {
			hint = "↓ more  " + hint
		}
		b.WriteString(dimStyle.Render(ansi.Truncate(hint, w, "…")))
	}
	return b.String()
}

func (m Model) body() []string {
	switch m.mode {
	case viewSummary:
		return m.s.SummaryLines()
	case viewViolations:
		return m.s.ViolationLines()
	case viewHelp:
		return helpLines
	case viewDetail:
		return m.detail()
	}
	return m.colourSeverities(m.s.StepLines(m.cur))
}

// colourSeverities colours the [SEVERITY] tags of violation lines.
func (m Model) colourSeverities(lines []string) []string {
	for i, l := range lines {
		for _, sev := range schemas.Severities() {
			tag := "[" + strings.ToUpper(sev) + "]"
			if strings.Contains(l, tag) {
				lines[i] = strings.Replace(l, tag, sevStyle[severityMark[sev]].Render(tag), 1)
			}
		}
	}
	return lines
}

// detail shows the current step's values in full, indented.
func (m Model) detail() []string {
	st := m.s.Step(m.cur)
	lines := []string{fmt.Sprintf("Step %d/%d  %s  %s  (detail)", m.cur+1, m.s.Steps(), st.StepID, st.Type), "description: " + st.Description}
	for _, f := range []struct {
		name string
		v    any
	}{{"input", st.Input}, {"output", st.Output}, {"metadata", st.Metadata}} {
		lines = append(lines, f.name+":")
		lines = append(lines, indented(f.v)...)
	}
	if e := m.s.Explanation(st.StepID); e != nil {
		lines = append(lines, "explanation:")
		lines = append(lines, indented(e)...)
	}
	return lines
}

// indented renders a value as indented JSON lines, as written: <, > and & unescaped.
func indented(v any) []string {
	var b bytes.Buffer
	if err := pyjson.Encode(&b, v, "  "); err != nil {
		return []string{"  " + fmt.Sprint(v)}
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return lines
}

var helpLines = []string{
	"Keys",
	"  → n l      next step            ← p h      previous step",
	"  j          next violation       k          previous violation",
	"  g          first step           G          last step",
	"  s          trace summary        v          all violations",
	"  d          step detail          ?          this help",
	"  /          search descriptions and inputs (enter: next match, esc: cancel)",
	"  ↑ ↓ pgup pgdn space   scroll    esc        back to the step",
	"  q          quit",
	"",
	"The timeline shows every step (folded when the trace is wider than the screen):",
	"C critical, H high, M medium, L low, . no violation; ^ is the current step.",
}
