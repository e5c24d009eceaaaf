package reporter

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"hash"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// MaxIndentDepth is the deepest nesting that written JSON indents; deeper values are
// written compactly. Indentation grows with depth, so without a bound a deeply nested
// value would take space quadratic in its size; with it, output stays linear in input.
const MaxIndentDepth = 16

// indenter re-indents compact JSON as encoding/json.Indent does (prefix after every
// newline, two spaces per level, "key": value, empty {} and []), as it streams through,
// down to MaxIndentDepth levels.
type indenter struct {
	w       *bufio.Writer
	prefix  string
	depth   int  // nesting of the current position
	pending bool // a container was just opened: indent before its first element
	str     bool // inside a string
	esc     bool // after a backslash in a string
}

func (x *indenter) Write(p []byte) (int, error) {
	for _, c := range p {
		if x.str {
			x.w.WriteByte(c)
			switch {
			case x.esc:
				x.esc = false
			case c == '\\':
				x.esc = true
			case c == '"':
				x.str = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		if x.pending && c != '}' && c != ']' {
			x.pending = false
			x.depth++
			x.newline()
		}
		switch c {
		case '"':
			x.str = true
			x.w.WriteByte(c)
		case '{', '[':
			x.pending = true
			x.w.WriteByte(c)
		case ',':
			x.w.WriteByte(c)
			x.newline()
		case ':':
			x.w.WriteByte(c)
			if x.depth <= MaxIndentDepth {
				x.w.WriteByte(' ')
			}
		case '}', ']':
			if x.pending {
				x.pending = false // empty: {} or []
			} else {
				inner := x.depth
				x.depth--
				if inner <= MaxIndentDepth {
					x.newline()
				}
			}
			x.w.WriteByte(c)
		default:
			x.w.WriteByte(c)
		}
	}
	return len(p), nil
}

func (x *indenter) newline() {
	if x.depth > MaxIndentDepth {
		return
	}
	x.w.WriteByte('\n')
	x.w.WriteString(x.prefix)
	for range x.depth {
		x.w.WriteString("  ")
	}
}

// jsonStream writes one JSON document a value at a time: large arrays (a trace's steps,
// its violations) are encoded element by element, so a document of any size is written
// without being held whole. Values are encoded as Python's json writes them (pyjson).
type jsonStream struct {
	ind *indenter
	err error
	h   hash.Hash // when set, receives the document's compact form
}

func newJSONStream(w *bufio.Writer, prefix string) *jsonStream {
	return &jsonStream{ind: &indenter{w: w, prefix: prefix}}
}

// raw writes JSON punctuation or a literal.
func (s *jsonStream) raw(text string) {
	if s.err == nil {
		if s.h != nil {
			s.h.Write([]byte(text))
		}
		_, s.err = s.ind.Write([]byte(text))
	}
}

// value writes one encoded value.
func (s *jsonStream) value(v any) {
	if s.err != nil {
		return
	}
	var b []byte
	if b, s.err = pyjson.Marshal(v); s.err == nil {
		s.write(b)
	}
}

// write writes one encoded value.
func (s *jsonStream) write(b []byte) {
	if s.h != nil {
		s.h.Write(appendCompact(nil, b))
	}
	_, s.err = s.ind.Write(b)
}

// field writes `"key": value` with the separator before it.
func (s *jsonStream) field(first bool, key string, v any) {
	s.key(first, key)
	s.value(v)
}

func (s *jsonStream) key(first bool, key string) {
	if !first {
		s.raw(",")
	}
	s.value(key)
	s.raw(":")
}

// array writes the elements of a slice one at a time.
func array[T any](s *jsonStream, items []T) {
	s.raw("[")
	for i := range items {
		if i > 0 {
			s.raw(",")
		}
		s.value(items[i])
	}
	s.raw("]")
}

// writeAuditJSON writes an audit as encoding/json would (fields in the order of
// schemas.AuditResult and schemas.Trace, indented), streaming its steps, explanations and
// violations. prefix starts every line after the first, for an audit nested in batch.json.
func writeAuditJSON(w *bufio.Writer, r *schemas.AuditResult, prefix string) error {
	return writeSignedAuditJSON(w, r, prefix, nil, "")
}

// writeSignedAuditJSON writes an audit as writeAuditJSON does and, with a signer, its
// signature as the last member: over the compact form of what comes before it, the
// trace's steps and report, the digest of the report.md written beside it ("" for none).
func writeSignedAuditJSON(w *bufio.Writer, r *schemas.AuditResult, prefix string, sg *Signer, report string) error {
	s := newJSONStream(w, prefix)
	var steps hash.Hash
	if sg != nil {
		s.h, steps = sha256.New(), sha256.New()
	}
	s.raw("{")
	s.key(true, "trace")
	if t := r.Trace; t == nil {
		s.raw("null")
	} else {
		s.raw("{")
		s.field(true, "trace_id", t.TraceID)
		s.field(false, "agent_name", t.AgentName)
		s.key(false, "steps")
		if steps == nil {
			array(s, t.Steps)
		} else {
			s.raw("[")
			var cb []byte
			for i := range t.Steps {
				if i > 0 {
					s.raw(",")
				}
				b, err := pyjson.Marshal(t.Steps[i])
				if err != nil {
					return err
				}
				// One compact copy feeds both digests.
				cb = appendCompact(cb[:0], b)
				steps.Write(cb)
				steps.Write([]byte{'\n'})
				s.h.Write(cb)
				h := s.h
				s.h = nil
				s.write(b)
				s.h = h
			}
			s.raw("]")
		}
		s.field(false, "metadata", t.Metadata)
		s.raw("}")
	}
	s.key(false, "explanations")
	array(s, r.Explanations)
	s.field(false, "summary", r.Summary)
	s.key(false, "violations")
	array(s, r.Violations)
	s.field(false, "risk_score", r.RiskScore)
	if r.Info != nil {
		s.field(false, "audit_info", r.Info)
	}
	if sg != nil {
		st := baseStatement(r, "audit.json")
		st.Steps = hex.EncodeToString(steps.Sum(nil))
		content := s.h
		content.Write([]byte{'}'}) // the signed form ends where the signature begins
		st.Content = hex.EncodeToString(content.Sum(nil))
		st.RiskScore, st.Violations = intp(r.RiskScore), intp(len(r.Violations))
		if r.Info != nil {
			st.RuleErrors = intp(len(r.Info.RuleErrors))
		}
		st.Report = report
		s.h = nil
		s.field(false, SignatureKey, sg.sign(st))
	}
	s.raw("}")
	return s.err
}

// encodeIndented writes any value as indented JSON with a final newline. Values that
// hold large arrays should have a streaming writer of their own; this one encodes v whole.
func encodeIndented(w *bufio.Writer, v any) error {
	s := newJSONStream(w, "")
	s.value(v)
	if s.err == nil {
		s.err = w.WriteByte('\n')
	}
	return s.err
}
