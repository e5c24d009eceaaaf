// Package otel turns OpenTelemetry traces (OTLP, decoded by the OpenTelemetry project's
// pdata) into troy traces: each span that is an agent's step (a model call, a tool call, a
// retrieval, a guardrail) becomes a step, under the GenAI semantic conventions,
// OpenInference, OpenLLMetry and the Vercel AI SDK's telemetry. docs/OTEL.md lists the
// mapping field by field.
//
// It imports pdata, schemas and the standard library; ingest reads OTLP JSON files
// through it, and a receiver feeds its Assembler with what it decodes.
package otel

import (
	"encoding/base64"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/troy-audit/troy/schemas/pyjson"
)

// Default limits: those of a trace file (ingest.DefaultMaxSize for a document), and
// Python's JSON nesting limit, which the trace reader has too.
const (
	DefaultMaxTraceBytes   = 64 << 20
	DefaultMaxAttributes   = 1024
	DefaultMaxDepth        = 1000
	DefaultMaxPendingBytes = 1 << 30
	DefaultMaxDoneTraces   = 100_000
)

// Limits bound what one trace, one span and the assembler may hold.
type Limits struct {
	// MaxTraceBytes bounds the spans of one trace, counted as the bytes of their keys and
	// values: a trace over it fails, as a trace file over --max-size does. It bounds the
	// spans of a trace too, since each counts at least spanOverhead bytes.
	MaxTraceBytes int64
	// MaxAttributes bounds the attributes of one span (with its events' attributes).
	MaxAttributes int
	// MaxDepth bounds the nesting of a value: an attribute's maps and lists, or a JSON
	// string parsed.
	MaxDepth int
	// MaxPendingBytes bounds the spans held for traces not yet taken; past it the oldest
	// open traces are closed as if idle.
	MaxPendingBytes int64
	// MaxDoneTraces bounds the traces taken whose span ids are remembered, so that a
	// retried export of them is known as a duplicate.
	MaxDoneTraces int
}

func (l Limits) withDefaults() Limits {
	if l.MaxTraceBytes <= 0 {
		l.MaxTraceBytes = DefaultMaxTraceBytes
	}
	if l.MaxAttributes <= 0 {
		l.MaxAttributes = DefaultMaxAttributes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxPendingBytes <= 0 {
		l.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if l.MaxDoneTraces <= 0 {
		l.MaxDoneTraces = DefaultMaxDoneTraces
	}
	return l
}

// spanOverhead is what a span counts toward MaxTraceBytes beside its attributes: its ids,
// times, name and the step's fixed fields.
const spanOverhead = 128

// converter turns attribute values into the values of a step, within the depth limit, and
// counts their bytes.
type converter struct {
	maxDepth int
	size     int64
	tooDeep  bool
}

// value converts an attribute value as a trace file's JSON would hold it: strings, ints,
// floats, booleans, lists, objects; bytes as base64 text.
func (c *converter) value(v pcommon.Value, depth int) any {
	if depth > c.maxDepth {
		c.tooDeep = true
		return nil
	}
	switch v.Type() {
	case pcommon.ValueTypeStr:
		c.size += int64(len(v.Str()))
		return v.Str()
	case pcommon.ValueTypeInt:
		c.size += 8
		return int(v.Int())
	case pcommon.ValueTypeDouble:
		c.size += 8
		return v.Double()
	case pcommon.ValueTypeBool:
		c.size += 4
		return v.Bool()
	case pcommon.ValueTypeBytes:
		s := base64.StdEncoding.EncodeToString(v.Bytes().AsRaw())
		c.size += int64(len(s))
		return s
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		out := make([]any, s.Len())
		for i := range s.Len() {
			out[i] = c.value(s.At(i), depth+1)
		}
		return out
	case pcommon.ValueTypeMap:
		out := make(map[string]any, v.Map().Len())
		for k, x := range v.Map().All() {
			c.size += int64(len(k))
			out[k] = c.value(x, depth+1)
		}
		return out
	}
	return nil
}

// parsed is a string holding JSON parsed (numbers as Python reads them), or the value as
// it is. A JSON text nested deeper than the limit stays a string.
func (c *converter) parsed(v any) any {
	s, ok := v.(string)
	if !ok {
		return v
	}
	t := strings.TrimSpace(s)
	if t == "" || (t[0] != '{' && t[0] != '[') || nesting(t) > c.maxDepth {
		return v
	}
	var out any
	if err := pyjson.Unmarshal([]byte(t), &out); err != nil {
		return v
	}
	return out
}

// nesting is the deepest nesting of brackets in a JSON text, counted before it is parsed
// so that a deep text is never parsed recursively.
func nesting(s string) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for i := range len(s) {
		ch := s[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
		case ch == '"':
			inString = true
		case ch == '{' || ch == '[':
			depth++
			deepest = max(deepest, depth)
		case ch == '}' || ch == ']':
			depth--
		}
	}
	return deepest
}

// unflatten rebuilds the lists and objects that instrumentations flatten into attribute
// keys (llm.input_messages.0.message.role): the attributes under prefix+"." become a tree
// whose objects with only index keys are lists. Indexes beyond the number of attributes
// are kept as object keys, so a forged index cannot size an allocation.
func unflatten(attrs map[string]any, prefix string) (any, []string) {
	root := map[string]any{}
	var used []string
	p := prefix + "."
	for k, v := range attrs {
		if !strings.HasPrefix(k, p) {
			continue
		}
		used = append(used, k)
		parts := strings.Split(k[len(p):], ".")
		node := root
		for i, part := range parts {
			if i == len(parts)-1 {
				if _, isMap := node[part].(map[string]any); !isMap {
					node[part] = v
				}
				break
			}
			next, ok := node[part].(map[string]any)
			if !ok {
				next = map[string]any{}
				node[part] = next
			}
			node = next
		}
	}
	if len(used) == 0 {
		return nil, nil
	}
	return listify(root, len(used)), used
}

// listify turns objects whose keys are all indexes below bound into lists, in index order,
// and unwraps the one-key objects OpenInference wraps items in ({"message": {...}}).
func listify(v any, bound int) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for k, x := range m {
		m[k] = listify(x, bound)
	}
	if len(m) == 1 {
		for k, x := range m {
			if wrapper(k) {
				return x
			}
		}
	}
	idx := make([]int, 0, len(m))
	for k := range m {
		n, ok := index(k, bound)
		if !ok {
			return m
		}
		idx = append(idx, n)
	}
	if len(idx) == 0 {
		return m
	}
	top := 0
	for _, n := range idx {
		top = max(top, n)
	}
	list := make([]any, top+1)
	for k, x := range m {
		n, _ := index(k, bound)
		list[n] = x
	}
	return list
}

func wrapper(k string) bool {
	switch k {
	case "message", "tool_call", "message_content", "document":
		return true
	}
	return false
}

func index(k string, bound int) (int, bool) {
	if k == "" || len(k) > 7 || (len(k) > 1 && k[0] == '0') {
		return 0, false
	}
	n := 0
	for i := range len(k) {
		if k[i] < '0' || k[i] > '9' {
			return 0, false
		}
		n = n*10 + int(k[i]-'0')
	}
	return n, n < bound
}
