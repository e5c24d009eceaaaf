package explainer

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"

	ahocorasick "github.com/BobuSumisu/aho-corasick"
	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
)

// A finding is a sensitive value at s[start:end] of one text.
type finding struct {
	start, end int
	kind       string
}

// keywordRule is one of gitleaks' rules: a regular expression that runs only on texts
// holding one of its keywords, whose secret (a submatch) must be random enough.
type keywordRule struct {
	id      string
	kind    string
	re      *regexp.Regexp
	group   int
	entropy float64
	allow   []*config.Allowlist
}

// rules are the detectors of sensitive values, compiled once and shared by every
// Redactor; they are never changed after compileRules, so they are safe for concurrent use.
type rules struct {
	keywords  []string       // lower case; a text's keywords are found in one pass
	index     map[string]int // keyword → its index
	trie      *ahocorasick.Trie
	byKeyword [][]int       // keyword index → indexes into keyed
	keyed     []keywordRule // gitleaks' rules with keywords
	always    []keywordRule // gitleaks' rules without keywords
	global    []*config.Allowlist
	phones    phoneRegions
}

// compileRules loads gitleaks' default rule set (embedded in its module, so no file is
// read) and adds troy's own detectors. It takes about 80 ms.
func compileRules() (*rules, error) {
	v := viper.New() // a viper of our own: the package-level one is shared state
	v.SetConfigType("toml")
	if err := v.ReadConfig(strings.NewReader(config.DefaultConfig)); err != nil {
		return nil, fmt.Errorf("load gitleaks' default rules: %w", err)
	}
	var vc config.ViperConfig
	if err := v.Unmarshal(&vc); err != nil {
		return nil, fmt.Errorf("load gitleaks' default rules: %w", err)
	}
	cfg, err := vc.Translate()
	if err != nil {
		return nil, fmt.Errorf("load gitleaks' default rules: %w", err)
	}
	rs := &rules{global: cfg.Allowlists, phones: newPhoneRegions()}
	index := map[string]int{}
	ids := make([]string, 0, len(cfg.Rules))
	for id := range cfg.Rules {
		ids = append(ids, id)
	}
	sort.Strings(ids) // a fixed order, so that equal inputs give equal outputs
	for _, id := range ids {
		r := cfg.Rules[id]
		// Rules that need a file path, or only serve other rules, do not apply to step data.
		if r.Regex == nil || r.Path != nil || r.SkipReport {
			continue
		}
		re, err := widenEnd(r.Regex)
		if err != nil {
			return nil, fmt.Errorf("load gitleaks' rule %s: %w", id, err)
		}
		kr := keywordRule{id: id, kind: gitleaksKind(id), re: re, group: r.SecretGroup, entropy: r.Entropy, allow: r.Allowlists}
		if len(r.Keywords) == 0 {
			rs.always = append(rs.always, kr)
			continue
		}
		rs.keyed = append(rs.keyed, kr)
		for _, k := range r.Keywords {
			k = strings.ToLower(k)
			i, ok := index[k]
			if !ok {
				i = len(rs.keywords)
				index[k] = i
				rs.keywords = append(rs.keywords, k)
				rs.byKeyword = append(rs.byKeyword, nil)
			}
			rs.byKeyword[i] = append(rs.byKeyword[i], len(rs.keyed)-1)
		}
	}
	// The words troy's own detectors wait for are found in the same pass.
	for _, w := range slices.Concat(ownKeywords, idDocumentWords) {
		if _, ok := index[w]; !ok {
			index[w] = len(rs.keywords)
			rs.keywords = append(rs.keywords, w)
			rs.byKeyword = append(rs.byKeyword, nil)
		}
	}
	rs.index = index
	rs.trie = ahocorasick.NewTrieBuilder().AddStrings(rs.keywords).Build()
	return rs, nil
}

// gitleaksEnd is how gitleaks' rules require a secret to end, written for source code:
// white space, a quote or a semicolon. In step data a key is as often followed by a
// slash, a bracket or a comma (a URL, a sentence, an id).
const gitleaksEnd = "(?:[\\x60'\"\\s;]|\\\\[nr]|$)"

// widenEnd lets a rule's secret end where text written by agents ends it too.
func widenEnd(re *regexp.Regexp) (*regexp.Regexp, error) {
	src := re.String()
	if !strings.Contains(src, gitleaksEnd) {
		return re, nil
	}
	return regexp.Compile(strings.ReplaceAll(src, gitleaksEnd, "(?:[\\x60'\"\\s;/)\\]}>,|&?#!.:]|\\\\[nr]|$)"))
}

// gitleaksKind names the placeholder of a gitleaks rule's findings.
func gitleaksKind(id string) string {
	switch {
	case id == "private-key":
		return "PRIVATE_KEY"
	case strings.HasPrefix(id, "jwt"):
		return "TOKEN"
	case strings.Contains(id, "password") || id == "curl-auth-user":
		return "PASSWORD"
	case id == "generic-api-key":
		return "SECRET"
	case id == "curl-auth-header":
		return "TOKEN"
	}
	return "API_KEY"
}

// scan is the work on one text: its lower-case copy, the keywords in it and what was
// found in it.
type scan struct {
	rs    *rules
	s     string
	lower string   // ASCII letters lowered, same length as s
	hits  []uint64 // a bit per keyword present
	found []finding
}

func (sc *scan) add(start, end int, kind string) {
	if start < end {
		sc.found = append(sc.found, finding{start, end, kind})
	}
}

// has reports whether the text contains any of words, keywords of ownKeywords.
func (sc *scan) has(words ...string) bool {
	for _, w := range words {
		if i, ok := sc.rs.index[w]; ok && sc.hits[i/64]&(1<<(i%64)) != 0 {
			return true
		}
	}
	return false
}

// find returns every sensitive value in s, in no particular order, possibly overlapping.
// depth counts the decodings (base64) that led to s.
func (rs *rules) find(s string, depth int) []finding {
	if len(s) < 4 {
		return nil
	}
	sc := &scan{rs: rs, s: s, lower: asciiLower(s), hits: make([]uint64, (len(rs.keywords)+63)/64)}
	rs.trie.Walk([]byte(sc.lower), func(_, _, pattern int64) bool {
		sc.hits[pattern/64] |= 1 << (pattern % 64)
		return true
	})
	rs.credentials(sc)
	rs.pii(sc)
	rs.gitleaks(sc)
	rs.encoded(sc, depth)
	return sc.found
}

// gitleaks runs the rules whose keywords occur in the text.
func (rs *rules) gitleaks(sc *scan) {
	var selected []bool
	for i, rules := range rs.byKeyword {
		if len(rules) == 0 || sc.hits[i/64]&(1<<(i%64)) == 0 {
			continue
		}
		if selected == nil {
			selected = make([]bool, len(rs.keyed))
		}
		for _, r := range rules {
			selected[r] = true
		}
	}
	for i, ok := range selected {
		if ok {
			rs.runRule(sc, &rs.keyed[i])
		}
	}
	for i := range rs.always {
		rs.runRule(sc, &rs.always[i])
	}
}

// runRule applies one gitleaks rule as gitleaks does: the secret is the rule's group (or
// the first non-empty one), it must be random enough, and no allowlist may excuse it.
func (rs *rules) runRule(sc *scan, r *keywordRule) {
	for _, m := range r.re.FindAllStringSubmatchIndex(sc.s, -1) {
		start, end := m[0], m[1]
		if r.group > 0 && 2*r.group+1 < len(m) {
			start, end = m[2*r.group], m[2*r.group+1]
		} else if r.group == 0 {
			for g := 1; 2*g+1 < len(m); g++ {
				if m[2*g] >= 0 && m[2*g+1] > m[2*g] {
					start, end = m[2*g], m[2*g+1]
					break
				}
			}
		}
		if start < 0 || start >= end {
			continue
		}
		secret := sc.s[start:end]
		if r.entropy > 0 && shannon(secret) <= r.entropy {
			continue
		}
		match := sc.s[m[0]:m[1]]
		if allowed(r.allow, secret, match, lineAround(sc.s, m[0], m[1])) || allowed(rs.global, secret, match, "") {
			continue
		}
		sc.add(start, end, r.kind)
	}
}

// allowed applies gitleaks' allowlists to a finding. Lists that need a commit or a path
// cannot apply to step data.
func allowed(lists []*config.Allowlist, secret, match, line string) bool {
	for _, a := range lists {
		target := secret
		switch a.RegexTarget {
		case "match":
			target = match
		case "line":
			target = line
		}
		regex := a.RegexAllowed(target)
		stop, _ := a.ContainsStopWord(secret)
		if a.MatchCondition == config.AllowlistMatchAnd {
			if len(a.Commits) > 0 || len(a.Paths) > 0 {
				continue
			}
			ok := len(a.Regexes) > 0 || len(a.StopWords) > 0
			if len(a.Regexes) > 0 {
				ok = ok && regex
			}
			if len(a.StopWords) > 0 {
				ok = ok && stop
			}
			if ok {
				return true
			}
			continue
		}
		if regex || stop {
			return true
		}
	}
	return false
}

// lineAround returns the line of s that holds s[start:end].
func lineAround(s string, start, end int) string {
	lo := strings.LastIndexByte(s[:start], '\n') + 1
	hi := strings.IndexByte(s[end:], '\n')
	if hi < 0 {
		return s[lo:]
	}
	return s[lo : end+hi]
}

// shannon is the entropy of s in bits per byte, as gitleaks computes it.
func shannon(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	h := 0.0
	for _, n := range counts {
		if n > 0 {
			p := float64(n) / float64(len(s))
			h -= p * math.Log2(p)
		}
	}
	return h
}

// asciiLower lowers ASCII letters only, so that offsets into the result are offsets into s.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// isPlaceholder reports whether v is a placeholder this package writes, such as
// [EMAIL_12]: a value already redacted.
func isPlaceholder(v string) bool {
	if len(v) < 5 || v[0] != '[' || v[len(v)-1] != ']' {
		return false
	}
	body := v[1 : len(v)-1]
	u := strings.LastIndexByte(body, '_')
	if u <= 0 || u == len(body)-1 {
		return false
	}
	for _, c := range body[:u] {
		if (c < 'A' || c > 'Z') && c != '_' {
			return false
		}
	}
	for _, c := range body[u+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// placeholderSpans returns where placeholders stand in s.
func placeholderSpans(s string) [][2]int {
	var out [][2]int
	for i := 0; i < len(s); i++ {
		if s[i] != '[' {
			continue
		}
		j := strings.IndexByte(s[i:], ']')
		if j < 0 {
			break
		}
		if isPlaceholder(s[i : i+j+1]) {
			out = append(out, [2]int{i, i + j + 1})
			i += j
		}
	}
	return out
}

// merge sorts findings and joins those that overlap, dropping any that lie inside a
// placeholder already in s. The kind of a joined finding is that of its longest part.
func merge(s string, found []finding) []finding {
	if len(found) == 0 {
		return nil
	}
	holders := placeholderSpans(s)
	inside := func(f finding) bool {
		for _, h := range holders {
			if f.start >= h[0] && f.end <= h[1] {
				return true
			}
		}
		return false
	}
	found = slices.DeleteFunc(found, inside)
	slices.SortFunc(found, func(a, b finding) int {
		if a.start != b.start {
			return a.start - b.start
		}
		if a.end != b.end {
			return b.end - a.end
		}
		return kindRank(a.kind) - kindRank(b.kind)
	})
	var out []finding
	var lead finding // the longest part of the finding being joined
	for _, f := range found {
		if n := len(out); n > 0 && f.start < out[n-1].end {
			last := &out[n-1]
			if l := f.end - f.start; l > lead.end-lead.start || l == lead.end-lead.start && kindRank(f.kind) < kindRank(lead.kind) {
				lead, last.kind = f, f.kind
			}
			last.end = max(last.end, f.end)
			continue
		}
		out = append(out, f)
		lead = f
	}
	return out
}

// kindRank orders kinds from the most specific, for a value that two detectors found.
func kindRank(kind string) int {
	if i := slices.Index(kindOrder, kind); i >= 0 {
		return i
	}
	return len(kindOrder)
}

var kindOrder = []string{"PRIVATE_KEY", "API_KEY", "TOKEN", "PASSWORD", "CARD", "IBAN", "SSN", "NATIONAL_ID", "ACCOUNT", "EMAIL", "PHONE", "SECRET"}
