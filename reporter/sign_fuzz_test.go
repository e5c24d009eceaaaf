package reporter

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troy-audit/troy/schemas"
)

// FuzzVerify feeds files of any shape to the verifiers, which read what anyone may have
// written: they never panic, they answer in one line, and only the files that were
// signed, byte for byte or with white space changed, verify.
//
//	go test ./reporter -run XXX -fuzz FuzzVerify -fuzztime 2m
func FuzzVerify(f *testing.F) {
	sg := &Signer{Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)), Version: "v1"}
	r := &schemas.AuditResult{Trace: &schemas.Trace{TraceID: "t", AgentName: "a", Steps: []*schemas.Step{
		{StepID: "s1", Type: "tool_call", Description: "x -->", Input: map[string]any{"q": "a\"b"}}}}, RiskScore: 40,
		Violations: []schemas.Violation{{RuleID: "r", StepID: "s1", Severity: "high"}}}
	dir := f.TempDir()
	mdPath, jsPath := filepath.Join(dir, "report.md"), filepath.Join(dir, "audit.json")
	if err := WriteAudit(r, Dest{Markdown: mdPath, JSON: jsPath, Signer: sg}); err != nil {
		f.Fatal(err)
	}
	md, err1 := os.ReadFile(mdPath)
	js, err2 := os.ReadFile(jsPath)
	if err1 != nil || err2 != nil {
		f.Fatal(err1, err2)
	}
	f.Add(js)
	f.Add(md)
	f.Add(bytes.Replace(js, []byte(`40`), []byte(`0`), 1))
	f.Add([]byte(`{"signature": {}}`))
	f.Add([]byte(`{"a": [1, {"b": "\u00e9"}], "signature": null}`))
	f.Add([]byte("<!-- troy-signature "))
	pk := sg.Key.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		for name, verify := range map[string]func([]byte, ed25519.PublicKey) (Statement, error){"audit": VerifyAudit, "report": VerifyReport} {
			_, err := verify(data, pk)
			if err != nil && strings.Contains(strings.TrimSpace(err.Error()), "\n") {
				t.Fatalf("%s: a message of several lines: %q", name, err)
			}
			if err == nil && name == "audit" && !bytes.Equal(compactAll(data), compactAll(js)) {
				t.Fatalf("a file that was never signed verifies: %q", data)
			}
		}
	})
}

func compactAll(b []byte) []byte { return appendCompact(nil, b) }
