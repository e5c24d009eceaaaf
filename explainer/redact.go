package explainer

import (
	"fmt"
	"math"
	"regexp"
	"strings"
)

// A detector finds one kind of sensitive value in text. check, when set, confirms a
// candidate (a checksum), so that ordinary numbers are left alone. group, when above
// zero, is the submatch that holds the secret (the rest, such as "password=", stays).
type detector struct {
	kind  string
	re    *regexp.Regexp
	group int
	check func(string) bool
	// alone rejects a match that continues, past one space or dash, into more digits:
	// a part of a longer number is not a phone number.
	alone bool
}

// detectors run in this order: the most specific first, so that a private key is not
// also taken apart as high-entropy strings, and a card number is not a phone number.
func detectors() []detector {
	return []detector{
		{kind: "PRIVATE_KEY", re: regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----`)},
		{kind: "TOKEN", re: regexp.MustCompile(`(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{8,}=*)`), group: 1},
		{kind: "TOKEN", re: regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)},
		{kind: "API_KEY", re: regexp.MustCompile(`\b(?:` +
			`sk-(?:proj-|ant-(?:api\d\d-)?|live-|test-)?[A-Za-z0-9_-]{16,}` +
			`|(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}` +
			`|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}` +
			`|glpat-[A-Za-z0-9_-]{20,}` +
			`|xox[abeoprs]-[A-Za-z0-9-]{10,}` +
			`|(?:AKIA|ASIA)[0-9A-Z]{16}` +
			`|AIza[0-9A-Za-z_-]{35}` +
			`|hf_[A-Za-z0-9]{30,}|npm_[A-Za-z0-9]{36}|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}` +
			`)`)},
		{kind: "PASSWORD", re: regexp.MustCompile(`(?i)\b[A-Za-z0-9_-]*(?:password|passwd|pwd|passphrase|secret|api[_-]?key|access[_-]?key|auth[_-]?token|token)\s*[=:]\s*("[^"]+"|'[^']+'|[^\s"'&,;]+)`), group: 1},
		{kind: "EMAIL", re: regexp.MustCompile(`\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b`)},
		{kind: "IBAN", re: regexp.MustCompile(`\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b`), check: validIBAN},
		{kind: "CARD", re: regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`), check: luhn},
		{kind: "SSN", re: regexp.MustCompile(`\b(\d{3})-(\d{2})-(\d{4})\b`), check: validSSN},
		{kind: "PHONE", re: regexp.MustCompile(`(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\b\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}\b`), check: phoneLike, alone: true},
		{kind: "SECRET", re: regexp.MustCompile(`[A-Za-z0-9+/_=-]{32,}`), check: highEntropy},
	}
}

// secretKeys are map keys whose string values are secrets whatever they look like.
var secretKeys = regexp.MustCompile(`(?i)^(?:password|passwd|pwd|passphrase|secret|client_secret|api[_-]?key|access[_-]?key|secret[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token|token|authorization|private[_-]?key|credentials?)$`)

// Redactor replaces sensitive values with typed placeholders ([EMAIL_1], [CARD_2] …)
// before anything is sent to a model. One Redactor serves one trace: the same value gets
// the same placeholder everywhere in it, so the model can still follow where data went.
type Redactor struct {
	detectors []detector
	seen      map[string]string // kind and value → placeholder
	counts    map[string]int
}

// NewRedactor returns a redactor for one trace.
func NewRedactor() *Redactor {
	return &Redactor{detectors: detectors(), seen: map[string]string{}, counts: map[string]int{}}
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

// String redacts one text.
func (r *Redactor) String(s string) string {
	for _, d := range r.detectors {
		s = r.apply(d, s)
	}
	return s
}

func (r *Redactor) apply(d detector, s string) string {
	matches := d.re.FindAllStringSubmatchIndex(s, -1)
	if matches == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range matches {
		start, end := m[0], m[1]
		if d.group > 0 {
			start, end = m[2*d.group], m[2*d.group+1]
		}
		value := s[start:end]
		if strings.HasPrefix(value, "[") || (d.check != nil && !d.check(value)) || (d.alone && !alone(s, start, end)) {
			continue // already a placeholder, or not what it looks like
		}
		b.WriteString(s[last:start])
		b.WriteString(r.placeholder(d.kind, strings.Trim(value, `"'`)))
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// Value redacts every string inside a decoded JSON value; the values of keys that name
// secrets (password, api_key, token …) are replaced whole.
func (r *Redactor) Value(v any) any {
	switch x := v.(type) {
	case string:
		return r.String(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if s, ok := val.(string); ok && s != "" && secretKeys.MatchString(k) {
				out[k] = r.placeholder("PASSWORD", s)
				continue
			}
			out[k] = r.Value(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = r.Value(val)
		}
		return out
	default:
		return v
	}
}

func (r *Redactor) fields(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return r.Value(m).(map[string]any)
}

func alone(s string, start, end int) bool {
	digitAt := func(i int) bool { return i >= 0 && i < len(s) && s[i] >= '0' && s[i] <= '9' }
	sep := func(i int) bool { return i >= 0 && i < len(s) && (s[i] == ' ' || s[i] == '-') }
	return !(sep(end) && digitAt(end+1)) && !(sep(start-1) && digitAt(start-2))
}

func luhn(s string) bool {
	sum, n, double := 0, 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
		n++
	}
	return n >= 13 && n <= 19 && sum%10 == 0 && sum > 0
}

func validIBAN(s string) bool {
	s = strings.ReplaceAll(s, " ", "")
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	s = s[4:] + s[:4]
	rem := 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			rem = (rem*10 + int(c-'0')) % 97
		case c >= 'A' && c <= 'Z':
			rem = (rem*100 + int(c-'A'+10)) % 97
		default:
			return false
		}
	}
	return rem == 1
}

func validSSN(s string) bool {
	area, group, serial := s[0:3], s[4:6], s[7:11]
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// phoneLike accepts numbers with 9 to 15 digits, the lengths of phone numbers with and
// without a country code, written with spaces, dashes, brackets or a plus; shorter runs
// are times, amounts and ids.
func phoneLike(s string) bool {
	if !strings.ContainsAny(s, " -(+") {
		return false // dots only: an IP address or a version, more often than a phone
	}
	n := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			n++
		}
	}
	return n >= 9 && n <= 15
}

// highEntropy accepts long strings that mix letters and digits and look random: keys and
// tokens of providers not listed, session secrets. Words, paths and hex ids below the
// threshold stay.
func highEntropy(s string) bool {
	var letters, digits bool
	counts := map[rune]int{}
	for _, c := range s {
		counts[c]++
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters = true
		}
	}
	if !letters || !digits {
		return false
	}
	h := 0.0
	for _, n := range counts {
		p := float64(n) / float64(len(s))
		h -= p * math.Log2(p)
	}
	return h >= 4.2
}
