package reporter

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/troy-audit/troy/schemas"
)

// SignatureFormat names the signed statement's layout and the domain of its signatures.
const SignatureFormat = "troy-signature-v1"

// SignatureKey is the top-level audit.json member that holds the signature.
const SignatureKey = "signature"

// Signer signs the reports WriteAudit writes. A nil *Signer writes them unsigned.
type Signer struct {
	Key     ed25519.PrivateKey
	Version string           // troy's version, recorded in what is signed
	Now     func() time.Time // nil means time.Now
}

// Statement is what a signature covers, for one file: the file's content by its digest and
// what a reader wants to know without opening it. Both audit.json and report.md carry one.
//
// Signed bytes: SignatureFormat, a newline, then the statement as compact JSON in this
// field order with Value empty (left out), strings escaped as encoding/json escapes them
// but for <, > and &, which are written as they are.
type Statement struct {
	Format    string `json:"format"`
	File      string `json:"file"` // "audit.json" or "report.md"
	Algorithm string `json:"algorithm"`
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"` // base64 of the raw 32 bytes
	SignedAt  string `json:"signed_at"`  // RFC 3339, UTC
	Version   string `json:"troy_version"`
	TraceID   string `json:"trace_id"`
	AgentName string `json:"agent_name"`
	PolicyID  string `json:"policy_id,omitempty"`
	Policy    string `json:"policy_sha256,omitempty"` // the policy revision: its content hash
	// Steps is the SHA-256 of the trace's steps: each step of audit.json's trace.steps as
	// compact JSON (whitespace outside strings removed), followed by a newline, in order.
	Steps string `json:"steps_sha256,omitempty"`
	// Content is the SHA-256 of the file's signed content: for audit.json its compact form
	// without the signature member; for report.md its bytes before the signature block.
	Content    string `json:"content_sha256"`
	RiskScore  *int   `json:"risk_score,omitempty"`
	Violations *int   `json:"violations,omitempty"`
	RuleErrors *int   `json:"rule_errors,omitempty"`
	// Report is the SHA-256 of the report.md written beside audit.json (its signed
	// content), when there is one.
	Report string `json:"report_sha256,omitempty"`
	Value  string `json:"value,omitempty"` // the Ed25519 signature, base64
}

// KeyID names a public key briefly: the first 16 hex digits of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// message is what the signature signs. The JSON is encoding/json's without HTML escaping
// (what a verifier in another language reproduces most easily), with no final newline.
func (st Statement) message() []byte {
	st.Value = ""
	var b bytes.Buffer
	b.WriteString(SignatureFormat + "\n")
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(st) // a struct of strings and ints always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// At returns the signer with its clock stopped at t, so that a report rendered again
// later is signed with the same bytes; nil stays nil (unsigned).
func (s *Signer) At(t time.Time) *Signer {
	if s == nil {
		return nil
	}
	c := *s
	c.Now = func() time.Time { return t }
	return &c
}

// sign fills in the signer's part of st and signs it.
func (s *Signer) sign(st Statement) Statement {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	pub := s.Key.Public().(ed25519.PublicKey)
	st.Format, st.Algorithm = SignatureFormat, "ed25519"
	st.KeyID, st.PublicKey = KeyID(pub), base64.StdEncoding.EncodeToString(pub)
	st.SignedAt = now().UTC().Format(time.RFC3339)
	st.Version = s.Version
	st.Value = base64.StdEncoding.EncodeToString(ed25519.Sign(s.Key, st.message()))
	return st
}

func baseStatement(r *schemas.AuditResult, file string) Statement {
	st := Statement{File: file}
	if r.Trace != nil {
		st.TraceID, st.AgentName = r.Trace.TraceID, r.Trace.AgentName
	}
	if r.Info != nil {
		st.PolicyID, st.Policy = r.Info.PolicyID, r.Info.PolicyHash
	}
	return st
}

func intp(n int) *int { return &n }

// The report.md signature block: a visible line, then the statement in an HTML comment.
// Verification rebuilds the whole block from the statement, so every byte of the file is
// covered.
const (
	mdBlockStart   = "\n---\n\n_Signed by troy "
	mdCommentStart = "<!-- " + SignatureFormat + " "
	mdCommentEnd   = " -->\n"
)

func markdownBlock(st Statement) string {
	b, _ := json.Marshal(st) // HTML-escaped: no text of the statement can close the comment
	return fmt.Sprintf("%s%s with key ed25519:%s at %s; `troyctl verify` checks it._\n\n%s%s%s",
		mdBlockStart, st.Version, st.KeyID, st.SignedAt, mdCommentStart, b, mdCommentEnd)
}

// hashWriter counts what goes through it into a hash.
type hashWriter struct {
	w io.Writer
	h hash.Hash
}

func (t hashWriter) Write(p []byte) (int, error) {
	t.h.Write(p)
	return t.w.Write(p)
}

// VerifyError says why a file failed verification: the file was altered, or signed by
// another key, or carries no signature.
type VerifyError struct {
	Reason string
}

func (e *VerifyError) Error() string { return e.Reason }

func failed(format string, args ...any) error {
	return &VerifyError{Reason: fmt.Sprintf(format, args...)}
}

// checkStatement checks st's signature; pub, when given, must be the signer's key.
func checkStatement(st Statement, pub ed25519.PublicKey) error {
	if st.Format != SignatureFormat || st.Algorithm != "ed25519" {
		return failed("signature format %q, algorithm %q: expected %s, ed25519", st.Format, st.Algorithm, SignatureFormat)
	}
	key, err := base64.StdEncoding.DecodeString(st.PublicKey)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return failed("signature public_key is not a base64 Ed25519 key")
	}
	if pub != nil && !bytes.Equal(key, pub) {
		return failed("signed by key %s, not by the expected key %s", KeyID(key), KeyID(pub))
	}
	if KeyID(key) != st.KeyID {
		return failed("signature key_id %s does not name its public key (%s)", st.KeyID, KeyID(key))
	}
	sig, err := base64.StdEncoding.DecodeString(st.Value)
	if err != nil || !ed25519.Verify(key, st.message(), sig) {
		return failed("signature does not match what it signs (the signature block was changed, or signed by someone else)")
	}
	return nil
}

// VerifyAudit checks a signed audit.json: its signature (by pub, when given), its content
// digest, its steps digest, and that the statement agrees with the content (trace, policy,
// risk score and counts). It returns the statement. A *VerifyError means the file is not
// what was signed; other errors mean it could not be read as an audit.
func VerifyAudit(data []byte, pub ed25519.PublicKey) (Statement, error) {
	var st Statement
	doc, err := scanDoc(data)
	if err != nil {
		return st, err
	}
	sig, ok := doc.member(SignatureKey)
	if !ok {
		return st, failed("no signature: audit.json has no %q member (written unsigned, or by another tool)", SignatureKey)
	}
	if err := json.Unmarshal(data[sig.start:sig.end], &st); err != nil {
		return st, failed("signature member is not a signature statement: %v", err)
	}
	if err := checkStatement(st, pub); err != nil {
		return st, err
	}
	if st.File != "audit.json" {
		return st, failed("the signature is for a %s, not an audit.json", st.File)
	}
	content := sha256.New()
	doc.compactWithout(data, content, SignatureKey)
	steps := sha256.New()
	if tr, ok := doc.member("trace"); ok {
		if s, ok := tr.member("steps"); ok {
			for _, e := range s.elems {
				compactSpan(data, e, steps)
				steps.Write([]byte{'\n'})
			}
		}
	}
	if got := hex.EncodeToString(steps.Sum(nil)); got != st.Steps {
		return st, failed("steps altered: their SHA-256 is %s, signed %s", got, st.Steps)
	}
	checks := []struct{ what, got, signed string }{
		{"risk_score", doc.raw(data, "risk_score"), fmtp(st.RiskScore)},
		{"violations", doc.count("violations"), fmtp(st.Violations)},
		{"trace_id", doc.raw(data, "trace", "trace_id"), strconv.Quote(st.TraceID)},
		{"audit_info.policy_hash", doc.raw(data, "audit_info", "policy_hash"), quoteOpt(st.Policy)},
		{"audit_info.rule_errors", cmp.Or(doc.count("audit_info", "rule_errors"), "0"), fmtp(st.RuleErrors)}, // none is left out
	}
	for _, c := range checks {
		if c.signed != "" && c.got != c.signed {
			return st, failed("%s altered: %s, signed %s", c.what, orNone(c.got), c.signed)
		}
	}
	if got := hex.EncodeToString(content.Sum(nil)); got != st.Content {
		return st, failed("content altered: its SHA-256 is %s, signed %s (a violation, explanation, audit_info or other field was changed)", got, st.Content)
	}
	return st, nil
}

func fmtp(n *int) string {
	if n == nil {
		return ""
	}
	return strconv.Itoa(*n)
}

func quoteOpt(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

func orNone(s string) string {
	if s == "" {
		return "missing"
	}
	return s
}

// VerifyReport checks a signed report.md: its signature (by pub, when given) and that its
// bytes before the signature block are those signed. It returns the statement.
func VerifyReport(data []byte, pub ed25519.PublicKey) (Statement, error) {
	var st Statement
	i := bytes.LastIndex(data, []byte(mdBlockStart))
	c := bytes.LastIndex(data, []byte(mdCommentStart))
	// The comment's start and end must not overlap ("<!-- troy-signature-v1 -->").
	if i < 0 || c < i || !bytes.HasSuffix(data, []byte(mdCommentEnd)) || c+len(mdCommentStart) > len(data)-len(mdCommentEnd) {
		return st, failed("no signature: report.md has no signature block at its end (written unsigned, or by another tool)")
	}
	raw := data[c+len(mdCommentStart) : len(data)-len(mdCommentEnd)]
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, failed("signature block does not hold a signature statement: %v", err)
	}
	if err := checkStatement(st, pub); err != nil {
		return st, err
	}
	if st.File != "report.md" {
		return st, failed("the signature is for a %s, not a report.md", st.File)
	}
	if !bytes.Equal(data[i:], []byte(markdownBlock(st))) {
		return st, failed("signature block altered")
	}
	sum := sha256.Sum256(data[:i])
	if got := hex.EncodeToString(sum[:]); got != st.Content {
		return st, failed("content altered: its SHA-256 is %s, signed %s", got, st.Content)
	}
	return st, nil
}

// ReportDigest is the SHA-256 of report.md's signed content (its bytes before the
// signature block, or all of them when it has none), as an audit.json's report_sha256.
func ReportDigest(data []byte) string {
	if i := bytes.LastIndex(data, []byte(mdBlockStart)); i >= 0 && bytes.HasSuffix(data, []byte(mdCommentEnd)) {
		data = data[:i]
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Unsigned returns a report.md or audit.json without its signature, as it was before
// signing (for comparing two reports of the same trace signed at different times).
func Unsigned(data []byte) []byte {
	if i := bytes.LastIndex(data, []byte(mdBlockStart)); i >= 0 && bytes.HasSuffix(data, []byte(mdCommentEnd)) {
		return data[:i]
	}
	i := bytes.LastIndex(data, []byte(",\n  \""+SignatureKey+"\": {"))
	if i < 0 || !bytes.HasSuffix(data, []byte("\n  }\n}\n")) {
		return data
	}
	return append(data[:i:i], "\n}\n"...)
}

// span is one JSON value in a document: [start, end), with its members when it is an
// object and its elements when it is an array.
type span struct {
	start, end int
	keys       []string // raw key text, quotes included
	vals       []span
	elems      []span
	array      bool
}

func (s span) member(key string) (span, bool) {
	q := strconv.Quote(key)
	for i, k := range s.keys {
		if k == q {
			return s.vals[i], true
		}
	}
	return span{}, false
}

// raw is the compact text of the value at path, or "" when there is none.
func (s span) raw(data []byte, path ...string) string {
	for _, p := range path {
		var ok bool
		if s, ok = s.member(p); !ok {
			return ""
		}
	}
	var b bytes.Buffer
	compactSpan(data, s, &b)
	return b.String()
}

// count is the number of elements of the array at path, or "" when there is none.
func (s span) count(path ...string) string {
	for _, p := range path {
		var ok bool
		if s, ok = s.member(p); !ok {
			return ""
		}
	}
	if !s.array {
		return ""
	}
	return strconv.Itoa(len(s.elems))
}

// compactWithout writes the object s compactly without its member named skip.
func (s span) compactWithout(data []byte, w io.Writer, skip string) {
	q := strconv.Quote(skip)
	w.Write([]byte{'{'})
	first := true
	for i, k := range s.keys {
		if k == q {
			continue
		}
		if !first {
			w.Write([]byte{','})
		}
		first = false
		io.WriteString(w, k)
		w.Write([]byte{':'})
		compactSpan(data, s.vals[i], w)
	}
	w.Write([]byte{'}'})
}

// compactSpan writes the value s with every whitespace outside strings removed.
func compactSpan(data []byte, s span, w io.Writer) {
	b := data[s.start:s.end]
	str, esc, from := false, false, 0
	for i, c := range b {
		switch {
		case str:
			if esc {
				esc = false
			} else if c == '\\' {
				esc = true
			} else if c == '"' {
				str = false
			}
		case c == '"':
			str = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if from < i {
				w.Write(b[from:i])
			}
			from = i + 1
		}
	}
	if from < len(b) {
		w.Write(b[from:])
	}
}

// appendCompact appends b with every whitespace outside strings removed.
func appendCompact(dst, b []byte) []byte {
	str, esc := false, false
	for _, c := range b {
		switch {
		case str:
			if esc {
				esc = false
			} else if c == '\\' {
				esc = true
			} else if c == '"' {
				str = false
			}
		case c == '"':
			str = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// scanDoc reads the structure of a JSON document whose top level is an object. It checks
// structure only (values are compared by their text).
func scanDoc(data []byte) (span, error) {
	p := &scanner{data: data}
	p.ws()
	if p.i >= len(data) || data[p.i] != '{' {
		return span{}, errors.New("not a JSON object: an audit.json starts with {")
	}
	s, err := p.value(0)
	if err != nil {
		return span{}, err
	}
	if p.ws(); p.i != len(data) {
		return span{}, fmt.Errorf("offset %d: text after the JSON document", p.i)
	}
	return s, nil
}

type scanner struct {
	data []byte
	i    int
}

func (p *scanner) ws() {
	for p.i < len(p.data) && strings.IndexByte(" \t\n\r", p.data[p.i]) >= 0 {
		p.i++
	}
}

func (p *scanner) errorf(what string) error {
	return fmt.Errorf("offset %d: expected %s", p.i, what)
}

// maxDepth is Python's json nesting limit, as the trace reader has it.
const maxDepth = 10000

func (p *scanner) value(depth int) (span, error) {
	if depth > maxDepth {
		return span{}, p.errorf("at most 10000 levels of nesting")
	}
	p.ws()
	s := span{start: p.i}
	if p.i >= len(p.data) {
		return s, p.errorf("a value")
	}
	switch p.data[p.i] {
	case '"':
		if err := p.str(); err != nil {
			return s, err
		}
	case '{', '[':
		open := p.data[p.i]
		s.array = open == '['
		close := byte('}')
		if s.array {
			close = ']'
		}
		p.i++
		p.ws()
		if p.i < len(p.data) && p.data[p.i] == close {
			p.i++
			break
		}
		for {
			if !s.array {
				p.ws()
				k := p.i
				if p.i >= len(p.data) || p.data[p.i] != '"' {
					return s, p.errorf("a key")
				}
				if err := p.str(); err != nil {
					return s, err
				}
				s.keys = append(s.keys, string(p.data[k:p.i]))
				p.ws()
				if p.i >= len(p.data) || p.data[p.i] != ':' {
					return s, p.errorf(":")
				}
				p.i++
			}
			v, err := p.value(depth + 1)
			if err != nil {
				return s, err
			}
			if s.array {
				s.elems = append(s.elems, v)
			} else {
				s.vals = append(s.vals, v)
			}
			p.ws()
			if p.i >= len(p.data) {
				return s, p.errorf(", or " + string(close))
			}
			if c := p.data[p.i]; c == close {
				p.i++
				break
			} else if c != ',' {
				return s, p.errorf(", or " + string(close))
			}
			p.i++
		}
	default: // a number or a literal: up to the next delimiter
		for p.i < len(p.data) && strings.IndexByte(",]}: \t\n\r", p.data[p.i]) < 0 {
			p.i++
		}
		if p.i == s.start {
			return s, p.errorf("a value")
		}
	}
	s.end = p.i
	return s, nil
}

func (p *scanner) str() error {
	for p.i++; p.i < len(p.data); p.i++ {
		switch p.data[p.i] {
		case '\\':
			p.i++
		case '"':
			p.i++
			return nil
		}
	}
	return p.errorf("the end of a string")
}
