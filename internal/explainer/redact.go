package explainer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// defaultRules compiles the detectors once per process, on first use: they never change
// afterwards and every Redactor shares them. Compiling takes about 80 ms, too long to pay
// per trace.
var defaultRules = sync.OnceValues(compileRules)

// lazyRegexp compiles a pattern on first use. The redaction and reply patterns are needed only
// where a model is asked; compiled at start-up they cost every troyctl command several
// milliseconds.
func lazyRegexp(pattern string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(pattern) })
}

// Redactor replaces sensitive values with typed placeholders ([EMAIL_1], [CARD_2] …)
// before anything is sent to a model. One Redactor serves one trace: the same value gets
// the same placeholder everywhere in it, so the model can still follow where data went.
//
// What it finds: credentials (gitleaks' rules, and troy's for passwords in any key, URL,
// header or flag), e-mail addresses, phone numbers, national identity numbers, card
// numbers and IBANs; in texts, in map keys, in numbers, inside JSON held in strings, and
// inside base64 and percent-encoded runs. A Redactor is not safe for concurrent use.
type Redactor struct {
	rules  *rules
	seen   map[string]string // kind and value → placeholder
	counts map[string]int
	memo   map[string]string // text → its redaction, for the texts a trace repeats
}

// NewRedactor returns a redactor for one trace. It fails only if the rules do not compile,
// which would be a defect of the build.
func NewRedactor() (*Redactor, error) {
	rs, err := defaultRules()
	if err != nil {
		return nil, err
	}
	return &Redactor{rules: rs, seen: map[string]string{}, counts: map[string]int{}, memo: map[string]string{}}, nil
}

// Counts tells how many distinct values of each kind were replaced.
func (r *Redactor) Counts() map[string]int { return r.counts }

func (r *Redactor) placeholder(kind, value string) string {
	key := kind + "\x00" + value
	if p, ok := r.seen[key]; ok {
		return p
	}
	r.counts[kind]++
	p := fmt.Sprintf("[%s_%d]", kind, r.counts[kind])
	r.seen[key] = p
	return p
}

const (
	// maxPasses bounds the redactions of one text until nothing more is found: replacing a
	// value can make its neighbours a match of their own, which the next pass takes.
	maxPasses = 4
	// maxNesting bounds JSON held in strings held in JSON …, each level decoded and
	// redacted as a value.
	maxNesting = 8
	// Texts up to memoSize bytes are remembered, up to memoEntries of them per trace.
	memoSize, memoEntries = 1 << 10, 1 << 16
	// maxText bounds what of one text is redacted and sent: a prompt shows far less, and
	// the time and memory redaction takes grow with it.
	maxText = 1 << 20
)

// String redacts one text.
func (r *Redactor) String(s string) string { return r.text(s, 0) }

func (r *Redactor) text(s string, depth int) string {
	if len(s) < 4 {
		return s // too short to hold anything
	}
	if len(s) > maxText {
		s = cut(s)
	}
	if out, ok := r.memo[s]; ok {
		return out
	}
	in := s
	for range maxPasses {
		out := r.once(s, depth)
		if out == s {
			break
		}
		s = out
	}
	if depth == 0 && len(in) <= memoSize && len(r.memo) < memoEntries {
		r.memo[in] = s
	}
	return s
}

// cut shortens a text to maxText bytes at a space, so that no value is cut in two and
// half of it left to be sent, and says how much was left out.
func cut(s string) string {
	i := strings.LastIndexAny(s[:maxText], " \t\n")
	if i < maxText/2 {
		for i = maxText; i > 0 && !utf8.RuneStart(s[i]); i-- {
		}
	}
	return s[:i] + fmt.Sprintf(" …[%d characters left out]", len(s)-i)
}

// once redacts a text in one pass: as JSON when it is JSON, then its percent-encoded runs,
// then every finding of the rules.
func (r *Redactor) once(s string, depth int) string {
	if depth < maxNesting {
		if out, ok := r.jsonText(s, depth); ok {
			return out
		}
	}
	if strings.ContainsAny(s, "%+") {
		if out, ok := r.percent(s, depth); ok {
			return out
		}
	}
	found := merge(s, r.rules.find(s, 0))
	if len(found) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, f := range found {
		b.WriteString(s[last:f.start])
		b.WriteString(r.placeholder(f.kind, s[f.start:f.end]))
		last = f.end
	}
	b.WriteString(s[last:])
	return b.String()
}

// jsonText redacts a text that is a JSON object or array as a value, keys and all, and
// writes it back compactly; ok is false when the text is not JSON or nothing changed.
func (r *Redactor) jsonText(s string, depth int) (string, bool) {
	t := strings.TrimSpace(s)
	if len(t) < 2 || !(t[0] == '{' && t[len(t)-1] == '}' || t[0] == '[' && t[len(t)-1] == ']') {
		return "", false
	}
	dec := json.NewDecoder(strings.NewReader(t))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", false
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", false // more after the value: text that starts and ends like JSON
	}
	red, changed := r.value(v, depth+1)
	if !changed {
		return "", false
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(red); err != nil {
		return "", false
	}
	return strings.TrimSuffix(b.String(), "\n"), true
}

// percent decodes the URL-encoded runs of a text that hide a sensitive value and puts
// their redaction, decoded, in their place. A run is read as a form would write it (+
// for a space) and, failing that, as a path would (+ for itself).
func (r *Redactor) percent(s string, depth int) (string, bool) {
	var b strings.Builder
	last, changed := 0, false
	for _, m := range percentRunRe().FindAllStringIndex(s, -1) {
		run := s[m[0]:m[1]]
		var decodings []string
		if formEncodedRe().MatchString(run) {
			decodings = append(decodings, percentDecode(strings.ReplaceAll(run, "+", " ")))
		}
		if strings.Contains(run, "%") {
			decodings = append(decodings, percentDecode(run))
		}
		for _, dec := range decodings {
			if dec == run {
				continue
			}
			red := r.text(dec, depth+1)
			if red == dec {
				continue // nothing hidden: the run stays as it was written
			}
			b.WriteString(s[last:m[0]])
			b.WriteString(red)
			last, changed = m[1], true
			break
		}
	}
	if !changed {
		return "", false
	}
	b.WriteString(s[last:])
	return b.String(), true
}

// Value redacts a decoded JSON value: every string in it, card numbers, and its map keys;
// the values of keys that name secrets or personal data (password, api_key, ssn …) are
// replaced whole.
func (r *Redactor) Value(v any) any {
	out, _ := r.value(v, 0)
	return out
}

func (r *Redactor) value(v any, depth int) (any, bool) {
	switch x := v.(type) {
	case string:
		out := r.text(x, depth)
		return out, out != x
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys) // placeholders are numbered in a fixed order, so prompts repeat
		out := make(map[string]any, len(x))
		changed := false
		for _, k := range keys {
			nk := r.text(k, depth)
			for n := 2; ; n++ { // two keys may redact to one
				if _, taken := out[nk]; !taken {
					break
				}
				nk = fmt.Sprintf("%s#%d", r.text(k, depth), n)
			}
			val, ch := r.field(k, x[k], depth)
			out[nk] = val
			changed = changed || ch || nk != k
		}
		return out, changed
	case []any:
		out := make([]any, len(x))
		changed := false
		for i, val := range x {
			var ch bool
			out[i], ch = r.value(val, depth)
			changed = changed || ch
		}
		return out, changed
	default:
		// A number alone is an amount, a count or an id far more often than a phone
		// number; only card numbers (checked) are taken, the rest by the key's name.
		if n, ok := numberText(v); ok && card(n) {
			return r.placeholder("CARD", n), true
		}
		return v, false
	}
}

// field redacts the value of key k: whole, when k names a secret and the value fits it;
// each item of a list of such values ("api_keys": […]) likewise.
func (r *Redactor) field(k string, v any, depth int) (any, bool) {
	if kind, need := secretName(k); kind != "" {
		if list, ok := v.([]any); ok {
			out := make([]any, len(list))
			changed := false
			for i, item := range list {
				var ch bool
				out[i], ch = r.field(k, item, depth)
				changed = changed || ch
			}
			return out, changed
		}
		s, ok := v.(string)
		if !ok {
			s, ok = numberText(v)
		}
		if ok && !isPlaceholder(s) && need(s) {
			return r.placeholder(kind, s), true
		}
	}
	return r.value(v, depth)
}

// numberText writes a JSON number as it was written (json.Number) or as Go reads it.
func numberText(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32), true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case int32:
		return strconv.FormatInt(int64(x), 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case uint:
		return strconv.FormatUint(uint64(x), 10), true
	}
	return "", false
}

func (r *Redactor) fields(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return r.Value(m).(map[string]any)
}
