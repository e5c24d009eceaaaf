package otel

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/troy-audit/troy/schemas"
)

// Trace is a troy trace assembled from spans, or why its spans could not make one.
type Trace struct {
	TraceID string         // the OpenTelemetry trace id, in hex
	Trace   *schemas.Trace // nil when Err is set
	// Late marks steps of a trace already taken, whose spans arrived after it: Trace holds
	// only those steps.
	Late bool
	// Seq is the Add call (1-based, in the assembler's life) that brought the trace's
	// first span: a file's reader turns it into the line.
	Seq int
	// Size is what the trace's spans counted toward MaxTraceBytes: a holder of traces
	// bounds its memory by it.
	Size int64
	Err  error
}

// Stats counts what the assembler was given, since it was made.
type Stats struct {
	Spans       int64 // spans given to Add
	Steps       int64 // steps in traces taken
	Duplicates  int64 // spans whose span id the trace already had (exporters retry)
	Ignored     int64 // spans of no GenAI convention (another service's, an HTTP call)
	Containers  int64 // GenAI spans that are not steps (agents, chains, workflows)
	Rejected    int64 // spans refused (no ids, over a limit)
	Late        int64 // spans of a trace already taken
	EmptyTraces int64 // traces taken with no step, dropped
}

// AddResult is what one Add accepted and refused.
type AddResult struct {
	Accepted, Rejected int
	// Err describes the first span refused, with its place in the export
	// (resourceSpans[0].scopeSpans[0].spans[3]); nil when none was.
	Err error
}

// Assembler gathers spans, in any order and with duplicates, into traces with exactly one
// step per span id. A trace is ready when its root span has arrived; Expire closes the
// traces that went quiet, by the caller's clock. It starts no goroutines and is not safe
// for concurrent use.
type Assembler struct {
	lim          Limits
	open         map[pcommon.TraceID]*pending
	order        []pcommon.TraceID // open traces, oldest first (stale entries skipped)
	ready        []pcommon.TraceID
	done         map[pcommon.TraceID]*doneTrace // traces taken
	doneOrder    []pcommon.TraceID
	pendingBytes int64
	seq          int
	stats        Stats
}

// doneTrace is what is remembered of a trace taken: its span ids (is each a step), and
// whose it was, for its late spans.
type doneTrace struct {
	spans map[string]bool
	agent string // the agent it was taken as
	owner string // the agent whose scoped export opened it, or ""
}

type pending struct {
	owner    string // the agent whose scoped export opened it, or ""
	nodes    map[string]*node
	resource map[string]any
	size     int64
	seq      int
	last     time.Time
	ready    bool
	late     bool
	err      error
}

// NewAssembler makes an assembler within the limits (zero fields take the defaults).
func NewAssembler(lim Limits) *Assembler {
	return &Assembler{
		lim:  lim.withDefaults(),
		open: map[pcommon.TraceID]*pending{},
		done: map[pcommon.TraceID]*doneTrace{},
	}
}

// Stats returns the counts so far.
func (a *Assembler) Stats() Stats { return a.stats }

// Add takes the spans of one export. now is the caller's clock, which Expire compares with.
// A span refused (no trace or span id, over a limit) fails its trace: an audit never sees
// a trace with a step silently missing.
func (a *Assembler) Add(td ptrace.Traces, now time.Time) AddResult { return a.AddFor(td, now, "") }

// AddFor is Add for an export whose sender may send only agent's traces (a token scoped to
// it): a trace it opens is agent's, whatever its spans name, and its spans of a trace
// another sender opened are refused (counted in AddResult, the trace left as it is).
// agent "" is a sender that may send any agent's traces.
func (a *Assembler) AddFor(td ptrace.Traces, now time.Time, agent string) AddResult {
	a.seq++
	var res AddResult
	reject := func(p *pending, spanID, at string, err error) {
		res.Rejected++
		a.stats.Rejected++
		if res.Err == nil {
			res.Err = fmt.Errorf("%s: %w", at, err)
		}
		if p != nil && p.err == nil {
			p.err = fmt.Errorf("span at %s: %w", at, err)
			// Only the span ids are kept, so that a retry of the trace is known.
			for _, n := range p.nodes {
				n.step, n.choice, n.agentMeta = nil, nil, nil
			}
			a.pendingBytes -= p.size
			p.size = 0
		}
		if p != nil && spanID != "" {
			p.nodes[spanID] = &node{spanID: spanID}
		}
	}
	for i, rs := range td.ResourceSpans().All() {
		var resource map[string]any
		for j, ss := range rs.ScopeSpans().All() {
			for k, span := range ss.Spans().All() {
				a.stats.Spans++
				// Where the span is in the export, for errors: made only for one.
				at := func() string { return fmt.Sprintf("resourceSpans[%d].scopeSpans[%d].spans[%d]", i, j, k) }
				tid, sid := span.TraceID(), span.SpanID()
				if tid.IsEmpty() {
					reject(nil, "", at()+".traceId", errors.New("expected a 16-byte trace id, got none"))
					continue
				}
				spanID := sid.String()
				done := a.done[tid]
				if done != nil && !sid.IsEmpty() {
					if _, seen := done.spans[spanID]; seen {
						a.stats.Duplicates++
						continue
					}
				}
				p := a.open[tid]
				owner := ""
				switch {
				case p != nil:
					owner = p.owner
				case done != nil:
					owner = done.owner
				default:
					owner = agent
				}
				if agent != "" && owner != agent {
					res.Rejected++
					a.stats.Rejected++
					if res.Err == nil {
						res.Err = fmt.Errorf("%s: trace %s is not agent %q's: this sender may send only that agent's traces", at(), tid, agent)
					}
					continue
				}
				if p == nil {
					p = &pending{owner: owner, nodes: map[string]*node{}, seq: a.seq, late: done != nil}
					a.open[tid] = p
					a.order = append(a.order, tid)
				}
				p.last = now
				if sid.IsEmpty() {
					reject(p, "", at()+".spanId", errors.New("expected an 8-byte span id, got none"))
					continue
				}
				if p.err != nil {
					res.Accepted++ // taken, and failed with its trace
					if int64(len(p.nodes)) < a.lim.MaxTraceBytes/spanOverhead {
						p.nodes[spanID] = &node{spanID: spanID}
					}
					continue
				}
				if _, dup := p.nodes[spanID]; dup {
					a.stats.Duplicates++
					res.Accepted++
					continue
				}
				if resource == nil {
					c := &converter{maxDepth: a.lim.MaxDepth}
					resource = make(map[string]any, rs.Resource().Attributes().Len())
					for key, v := range rs.Resource().Attributes().All() {
						resource[key] = c.value(v, 1)
					}
				}
				n, err := mapSpan(span, ss.Scope(), resource, a.lim)
				if err != nil {
					reject(p, spanID, at(), err)
					continue
				}
				if p.resource == nil {
					p.resource = resource
				}
				if p.size+n.size > a.lim.MaxTraceBytes {
					reject(p, spanID, at(), fmt.Errorf("trace %s is over the %d-byte limit of a trace", tid, a.lim.MaxTraceBytes))
					continue
				}
				p.nodes[spanID] = n
				p.size += n.size
				a.pendingBytes += n.size
				res.Accepted++
				switch n.role {
				case RoleIgnored:
					a.stats.Ignored++
				case RoleContainer, RoleAgent:
					a.stats.Containers++
				}
				if p.late {
					a.stats.Late++
				}
				// A late span's trace was taken at its root: there is nothing to wait for.
				if n.parentID == "" || p.late {
					a.markReady(tid, p)
				}
			}
		}
	}
	for a.pendingBytes > a.lim.MaxPendingBytes && a.evictOldest() {
	}
	return res
}

func (a *Assembler) markReady(tid pcommon.TraceID, p *pending) {
	if !p.ready {
		p.ready = true
		a.ready = append(a.ready, tid)
	}
}

// evictOldest makes the oldest open trace that is not ready yet ready.
func (a *Assembler) evictOldest() bool {
	for len(a.order) > 0 {
		tid := a.order[0]
		a.order = a.order[1:]
		if p := a.open[tid]; p != nil && !p.ready {
			a.markReady(tid, p)
			return true
		}
	}
	return false
}

// Ready takes the traces whose root span has arrived (or that were closed to keep within
// MaxPendingBytes). A span that arrives for a trace after it was taken comes out again
// as a Late trace of its own steps; one already taken is a duplicate.
func (a *Assembler) Ready() []Trace {
	var out []Trace
	for _, tid := range a.ready {
		p := a.open[tid]
		if p == nil {
			continue
		}
		delete(a.open, tid)
		a.pendingBytes -= p.size
		if t, ok := a.build(tid, p); ok {
			out = append(out, t)
		}
	}
	a.ready = a.ready[:0]
	if len(a.order) > 2*len(a.open)+64 { // drop the stale entries now and then
		a.order = slices.DeleteFunc(a.order, func(tid pcommon.TraceID) bool { return a.open[tid] == nil })
	}
	return out
}

// Expire closes the traces whose last span came idle or longer before now, and takes
// them with the ready ones.
func (a *Assembler) Expire(now time.Time, idle time.Duration) []Trace {
	for tid, p := range a.open {
		if now.Sub(p.last) >= idle {
			a.markReady(tid, p)
		}
	}
	slices.SortFunc(a.ready, func(x, y pcommon.TraceID) int { return cmp.Compare(a.open[x].seq, a.open[y].seq) })
	return a.Ready()
}

// Flush closes every open trace and takes them all, in the order their first spans came:
// a file's reader calls it at the end of the file.
func (a *Assembler) Flush() []Trace {
	for tid, p := range a.open {
		a.markReady(tid, p)
	}
	slices.SortFunc(a.ready, func(x, y pcommon.TraceID) int {
		return cmp.Or(cmp.Compare(a.open[x].seq, a.open[y].seq), slices.Compare(x[:], y[:]))
	})
	return a.Ready()
}

// build makes the troy trace of a pending trace and remembers its span ids. A trace with
// no step is dropped (counted), as troy's traces hold at least one.
func (a *Assembler) build(tid pcommon.TraceID, p *pending) (Trace, bool) {
	t := Trace{TraceID: tid.String(), Late: p.late, Seq: p.seq, Size: p.size}
	done := a.done[tid]
	if done == nil {
		done = &doneTrace{spans: map[string]bool{}, owner: p.owner}
		a.done[tid] = done
		a.doneOrder = append(a.doneOrder, tid)
		for len(a.doneOrder) > a.lim.MaxDoneTraces {
			delete(a.done, a.doneOrder[0])
			a.doneOrder = a.doneOrder[1:]
		}
	}
	seen := done.spans
	for id, n := range p.nodes {
		seen[id] = n.step != nil
		if n.choice != nil {
			seen[n.choice.StepID] = true
		}
	}
	if p.err != nil {
		t.Err = p.err
		return t, true
	}
	nodes := slices.Collect(maps.Values(p.nodes))
	slices.SortFunc(nodes, func(x, y *node) int {
		return cmp.Or(cmp.Compare(x.start, y.start), cmp.Compare(x.spanID, y.spanID))
	})
	tr := &schemas.Trace{TraceID: t.TraceID, Metadata: map[string]any{}}
	maps.Copy(tr.Metadata, p.resource)
	var service string
	var chose *node // the last model call whose reply chose tools
	for _, n := range nodes {
		if service == "" {
			service = n.service
		}
		if n.role == RoleAgent {
			if tr.AgentName == "" {
				tr.AgentName = n.agentName
			}
			for k, v := range n.agentMeta {
				if _, ok := tr.Metadata[k]; !ok {
					tr.Metadata[k] = v
				}
			}
		}
		if n.step == nil {
			continue
		}
		s := n.step
		s.ParentStepID = a.stepParent(p, seen, n)
		// A step that started before the model call ended (an instrumentation may end
		// the call's span after running the tools it chose) started after the choice
		// was made: the choice is dated no later, so that it comes before in time too.
		if chose != nil && n.start > 0 && n.start < chose.choiceAt {
			ts := timestamp(n.start)
			chose.choice.Timestamp = &ts
		}
		chose = nil
		tr.Steps = append(tr.Steps, s)
		if n.choice != nil {
			tr.Steps = append(tr.Steps, n.choice)
			chose = n
		}
	}
	if len(tr.Steps) == 0 {
		a.stats.EmptyTraces++
		return t, false
	}
	if tr.AgentName == "" {
		for _, n := range nodes {
			if n.agentName != "" {
				tr.AgentName = n.agentName
				break
			}
		}
	}
	if tr.AgentName == "" {
		tr.AgentName = service
	}
	// A scoped sender's trace is its agent's, and a late part is the agent's its trace
	// was taken as, whatever the spans name.
	switch {
	case p.owner != "":
		tr.AgentName = p.owner
	case p.late && done.agent != "":
		tr.AgentName = done.agent
	}
	for _, f := range []string{"permission_level", "network_zone", "data_classification"} {
		if v, ok := tr.Metadata["troy."+f].(string); ok && v != "" {
			tr.Metadata[f] = v
		}
	}
	if err := schemas.CheckID(tr.AgentName); err != nil {
		t.Err = fmt.Errorf("trace %s: agent name: %w", t.TraceID, err)
		return t, true
	}
	a.stats.Steps += int64(len(tr.Steps))
	done.agent = tr.AgentName
	t.Trace = tr
	return t, true
}

// stepParent is the nearest ancestor of a step that is a step itself: spans that are not
// steps (chains, HTTP calls) are passed over. A parent that was in an earlier part of the
// trace is kept when it was a step.
func (a *Assembler) stepParent(p *pending, seen map[string]bool, n *node) *string {
	id := n.parentID
	for range len(p.nodes) + 1 { // a cycle of forged parents ends here
		if id == "" {
			return nil
		}
		parent, ok := p.nodes[id]
		if !ok {
			if isStep, taken := seen[id]; taken && isStep && p.late {
				return &id
			}
			return nil
		}
		if parent.step != nil {
			return &id
		}
		id = parent.parentID
	}
	return nil
}
