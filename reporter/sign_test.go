package reporter

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/ingest/tracegen"
	"github.com/troy-audit/troy/schemas"
)

func testSigner(t testing.TB) *Signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{Key: key, Version: "v9.9.9", Now: func() time.Time { return time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC) }}
}

// writeSigned writes a signed report.md and audit.json of r and returns their bytes.
func writeSigned(t *testing.T, r *schemas.AuditResult, sg *Signer) (md, js []byte) {
	t.Helper()
	dir := t.TempDir()
	mdPath, jsPath := filepath.Join(dir, "report.md"), filepath.Join(dir, "audit.json")
	if err := WriteAudit(r, Dest{Markdown: mdPath, JSON: jsPath, Signer: sg}); err != nil {
		t.Fatal(err)
	}
	md, err1 := os.ReadFile(mdPath)
	js, err2 := os.ReadFile(jsPath)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return md, js
}

func pub(sg *Signer) ed25519.PublicKey { return sg.Key.Public().(ed25519.PublicKey) }

// A signed audit verifies, with what was signed; written unsigned it is what troy wrote
// before signing, byte for byte.
func TestSignedAuditVerifies(t *testing.T) {
	sg := testSigner(t)
	r := result()
	r.Trace.Steps = append(r.Trace.Steps, &schemas.Step{StepID: "s2", Type: "tool_call", Description: "big",
		Input: map[string]any{"n": new(big.Int).Lsh(big.NewInt(1), 100), "f": 5.0, "s": "a \"quoted\" {brace}: ,"}})
	md, js := writeSigned(t, r, sg)
	st, err := VerifyAudit(js, pub(sg))
	if err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	if st.TraceID != "t1" || st.Policy != "0123456789abcdef" || st.Version != "v9.9.9" || st.SignedAt != "2026-12-03T07:00:00Z" ||
		st.KeyID != KeyID(pub(sg)) || *st.RiskScore != 50 || *st.Violations != 1 || st.Report != ReportDigest(md) {
		t.Errorf("statement: %+v", st)
	}
	if _, err := VerifyAudit(js, nil); err != nil {
		t.Errorf("without an expected key, the file's own key is checked: %v", err)
	}
	mst, err := VerifyReport(md, pub(sg))
	if err != nil {
		t.Fatalf("%v\n%s", err, md)
	}
	if mst.Content != st.Report || mst.File != "report.md" {
		t.Errorf("report statement: %+v", mst)
	}
	umd, ujs := writeSigned(t, r, nil)
	if !bytes.Equal(Unsigned(md), umd) || !bytes.Equal(Unsigned(js), ujs) {
		t.Errorf("unsigned forms differ:\n%s\n---\n%s", Unsigned(js), ujs)
	}
	if bytes.Contains(ujs, []byte(SignatureKey)) || bytes.Contains(umd, []byte(SignatureFormat)) {
		t.Errorf("no signer, no signature")
	}
}

// Any change to what was signed fails verification with a VerifyError naming it.
func TestTamperedAuditFails(t *testing.T) {
	sg := testSigner(t)
	md, js := writeSigned(t, result(), sg)
	other := testSigner(t)
	_, jsOther := writeSigned(t, result(), other)
	for _, tc := range []struct {
		name, old, new string
		data           []byte
		want           string
	}{
		{name: "risk score", old: `"risk_score": 50`, new: `"risk_score": 0`, want: "risk_score altered: 0, signed 50"},
		{name: "violation", old: `"severity": "critical"`, new: `"severity": "low"`, want: "content altered"},
		{name: "violation removed", old: `"rule_id": "r1"`, new: `"rule_id": "r0"`, want: "content altered"},
		{name: "step", old: `"description": "x"`, new: `"description": "y"`, want: "steps altered"},
		{name: "rule errors", old: `"count": 2`, new: `"count": 1`, want: "content altered"},
		{name: "policy", old: `"policy_hash": "0123456789abcdef"`, new: `"policy_hash": "ff23456789abcdef"`, want: "audit_info.policy_hash altered"},
		{name: "signed field", old: `"troy_version": "v9.9.9"`, new: `"troy_version": "v9.9.8"`, want: "signature does not match"},
		{name: "signature removed", data: Unsigned(js), want: "no signature"},
		{name: "another key", data: jsOther, want: "signed by key " + KeyID(pub(other))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if data == nil {
				if !bytes.Contains(js, []byte(tc.old)) {
					t.Fatalf("audit.json lacks %s", tc.old)
				}
				data = bytes.Replace(js, []byte(tc.old), []byte(tc.new), 1)
			}
			_, err := VerifyAudit(data, pub(sg))
			var ve *VerifyError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a VerifyError with %q", err, tc.want)
			}
		})
	}
	// Whitespace is not content: the same audit re-indented still verifies.
	if _, err := VerifyAudit(bytes.ReplaceAll(js, []byte("\n  "), []byte("\n\t")), pub(sg)); err != nil {
		t.Errorf("re-indented: %v", err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"risk score", "**Risk Score:** 50/100", "**Risk Score:** 0/100", "content altered"},
		{"violation", "[CRITICAL]", "[LOW]", "content altered"},
		{"signature line", "_Signed by troy v9.9.9", "_Signed by troy v1.0.0", "signature block altered"},
		{"appended", "", "", "no signature"},
	} {
		t.Run("report.md "+tc.name, func(t *testing.T) {
			data := bytes.Replace(md, []byte(tc.old), []byte(tc.new), 1)
			if tc.old == "" {
				data = append(bytes.Clone(md), "more\n"...)
			}
			_, err := VerifyReport(data, pub(sg))
			var ve *VerifyError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a VerifyError with %q", err, tc.want)
			}
		})
	}
	if _, err := VerifyAudit([]byte("[1]"), nil); err == nil || errors.As(err, new(*VerifyError)) {
		t.Errorf("not an audit is a read error, not a verification failure: %v", err)
	}
}

// What signing costs a report of a 10,000-step trace: one SHA-256 pass over the compact
// JSON, and one over the steps.
func BenchmarkWriteAudit(b *testing.B) {
	r := &schemas.AuditResult{Trace: tracegen.New(tracegen.Options{Steps: 10000, Seed: 1, BadRate: 0.1}).Trace(), RiskScore: 40}
	for _, tc := range []struct {
		name string
		sg   *Signer
	}{{"unsigned", nil}, {"signed", testSigner(b)}} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			d := Dest{Markdown: filepath.Join(dir, "report.md"), JSON: filepath.Join(dir, "audit.json"), Signer: tc.sg}
			for b.Loop() {
				if err := WriteAudit(r, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Verifying the same audit.json.
func BenchmarkVerifyAudit(b *testing.B) {
	sg := testSigner(b)
	r := &schemas.AuditResult{Trace: tracegen.New(tracegen.Options{Steps: 10000, Seed: 1, BadRate: 0.1}).Trace(), RiskScore: 40}
	dir := b.TempDir()
	js := filepath.Join(dir, "audit.json")
	if err := WriteAudit(r, Dest{Markdown: filepath.Join(dir, "report.md"), JSON: js, Signer: sg}); err != nil {
		b.Fatal(err)
	}
	data, _ := os.ReadFile(js)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := VerifyAudit(data, pub(sg)); err != nil {
			b.Fatal(err)
		}
	}
}

// Ids are free text: one holding "-->", markup and a line break neither closes the
// report's signature comment nor stops either file from verifying.
func TestSignedReportWithHostileIDs(t *testing.T) {
	sg := testSigner(t)
	r := result()
	r.Trace.TraceID, r.Trace.AgentName = "t --> <b>x</b> & y", "bot\n## Signature"
	md, js := writeSigned(t, r, sg)
	block := md[bytes.LastIndex(md, []byte(mdBlockStart)):]
	if bytes.Count(block, []byte("-->")) != 1 || !bytes.HasSuffix(block, []byte(" -->\n")) {
		t.Errorf("the comment is closed early:\n%s", block)
	}
	if st, err := VerifyReport(md, pub(sg)); err != nil || st.TraceID != r.Trace.TraceID || st.AgentName != r.Trace.AgentName {
		t.Errorf("report.md: %v %+v", err, st)
	}
	if st, err := VerifyAudit(js, pub(sg)); err != nil || st.TraceID != r.Trace.TraceID {
		t.Errorf("audit.json: %v %+v", err, st)
	}
}

// Render gives the bytes WriteAudit writes to two files side by side, signed or not, and a
// signer stopped at a time signs a report rendered twice with the same bytes.
func TestRenderIsWhatWriteAuditWrites(t *testing.T) {
	sg := testSigner(t)
	sg.Now = nil
	at := sg.At(time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC))
	for name, s := range map[string]*Signer{"signed": at, "unsigned": nil} {
		t.Run(name, func(t *testing.T) {
			wmd, wjs := writeSigned(t, result(), s)
			md, js, err := Render(result(), s)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(md, wmd) || !bytes.Equal(js, wjs) {
				t.Errorf("rendered differs from written:\n%s\n---\n%s", js, wjs)
			}
			md2, js2, _ := Render(result(), s)
			if !bytes.Equal(md, md2) || !bytes.Equal(js, js2) {
				t.Errorf("rendered twice, different bytes")
			}
		})
	}
	if (*Signer)(nil).At(time.Now()) != nil {
		t.Errorf("a nil signer stays nil")
	}
	if sg.Now != nil {
		t.Errorf("At changed the signer it copied")
	}
}
