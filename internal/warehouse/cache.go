package warehouse

import (
	"sync"
	"time"

	"github.com/troy-audit/troy/event"
)

// traceCache keeps what the steps of recent traces say about them, as the sink stores the
// steps, so that a finished trace's row is made without reading its steps back from the
// stream. It holds the same values a read would give; a trace it has not seen whole (the
// steps came before a restart, or out of order) is read back instead.
type traceCache struct {
	mu    sync.Mutex
	m     map[string]*cachedTrace
	order []string // insertion order, for eviction
	max   int
}

type cachedTrace struct {
	info   traceInfo
	broken bool // a step is missing: read the trace back
}

func newTraceCache(max int) *traceCache {
	return &traceCache{m: map[string]*cachedTrace{}, max: max}
}

func cacheKey(agent, trace, run string) string {
	return event.StepsSubject(agent, trace) + " " + run
}

// add records a step as the steps table stores it.
func (c *traceCache) add(ev *stepEvent, at time.Time) {
	key := cacheKey(ev.AgentName, ev.TraceID, ev.Run)
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.m[key]
	if t == nil {
		if ev.Seq != 0 {
			return // the start came earlier: only a read gives the whole trace
		}
		t = &cachedTrace{info: traceInfo{index: map[string]int{}}}
		c.m[key] = t
		c.order = append(c.order, key)
		for len(c.order) > c.max {
			delete(c.m, c.order[0])
			c.order = c.order[1:]
		}
	}
	ti := &t.info
	switch {
	case ev.Seq < ti.steps:
		return // a redelivery
	case ev.Seq > ti.steps:
		t.broken = true
		return
	}
	if ti.steps == 0 {
		ti.meta = ev.TraceMetadata
	}
	ti.addStep(ev.Step.StepID, ev.Step.Type, at)
}

// get returns a copy of a trace's info when all of its steps were seen.
func (c *traceCache) get(ref event.TraceRef, steps int) (*traceInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.m[cacheKey(ref.AgentName, ref.TraceID, ref.Run)]
	if t == nil || t.broken || t.info.steps != steps || steps == 0 {
		return nil, false
	}
	ti := t.info // the slices and maps are only appended to under the lock, never changed
	ti.at = ti.at[:len(ti.at):len(ti.at)]
	return &ti, true
}
