package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troy-audit/troy/internal/signing"
	"github.com/troy-audit/troy/reporter"
)

// auditSigned audits the example trace into out/ and returns the paths of its reports.
func auditSigned(t *testing.T, extra ...string) (md, js string) {
	t.Helper()
	md, js = filepath.Join("out", "report.md"), filepath.Join("out", "audit.json")
	args := append([]string{"audit", example(t, "traces", "pii-exfiltration.json"), example(t, "policy.json"), "--no-explain", "-o", md, "-j", js}, extra...)
	if r := troyctl(t, args...); r.code != 0 {
		t.Fatalf("audit: exit %d %s", r.code, r.stderr)
	}
	return md, js
}

func TestVerifyAcceptsWhatAuditWrote(t *testing.T) {
	t.Chdir(t.TempDir())
	md, js := auditSigned(t)
	r := troyctl(t, "verify", js, md)
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"the local key in " + os.Getenv(signing.EnvKey),
		"out/audit.json: valid audit.json\n  trace support-7f3a (agent support-assistant), policy ",
		"risk score 50, 1 violation(s), steps sha256 ",
		"out/report.md: valid report.md\n",
		", signed 20",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify output lacks %q:\n%s", want, r.stdout)
		}
	}
	// The public key as auth public-key prints it, given as text and as a file.
	pk := troyctl(t, "auth", "public-key")
	if pk.code != 0 || !strings.HasPrefix(pk.stdout, signing.PublicKeyPrefix) {
		t.Fatalf("public-key: %d %q %s", pk.code, pk.stdout, pk.stderr)
	}
	if err := os.WriteFile("troy.pub", []byte(pk.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{strings.TrimSpace(pk.stdout), "troy.pub"} {
		if r := troyctl(t, "verify", js, md, "--public-key", key); r.code != 0 || !strings.Contains(r.stdout, "given with --public-key") {
			t.Errorf("--public-key %s: exit %d %s", key, r.code, r.stderr)
		}
	}
	var pj map[string]string
	text := strings.TrimSpace(pk.stdout)
	pk = troyctl(t, "auth", "public-key", "--json")
	if err := json.Unmarshal([]byte(pk.stdout), &pj); err != nil || pj["public_key"] != text || pj["key_file"] != os.Getenv(signing.EnvKey) || len(pj["key_id"]) != 16 {
		t.Fatalf("public-key --json: %v %s", err, pk.stdout)
	}
	// troy's own readers of audits take a signed one as they took it unsigned.
	if r := troyctl(t, "replay", js, "--no-interactive"); r.code != 0 || !strings.Contains(r.stdout, "risk 50/100") {
		t.Errorf("replay of a signed audit: exit %d %s", r.code, r.stderr)
	}
	if r := troyctl(t, "diff", js, js); r.code != 0 || !strings.Contains(r.stdout, "0 appeared, 0 disappeared") {
		t.Errorf("diff of a signed audit: exit %d %s", r.code, r.stderr)
	}
	var out []verifyOutput
	r = troyctl(t, "verify", js, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out) != 1 || !out[0].Valid || out[0].Signed.TraceID != "support-7f3a" {
		t.Fatalf("verify --json: %v %s", err, r.stdout)
	}
}

// A changed violation, risk score, step or report fails with exit 3 and one line naming
// the file and what failed; so does a file signed by another key, or not signed.
func TestVerifyRejectsAltered(t *testing.T) {
	t.Chdir(t.TempDir())
	md, js := auditSigned(t)
	origJS, _ := os.ReadFile(js)
	origMD, _ := os.ReadFile(md)
	otherKey := filepath.Join(t.TempDir(), "other.key")
	other := filepath.Join("other", "audit.json")
	if r := troyctl(t, "audit", example(t, "traces", "pii-exfiltration.json"), example(t, "policy.json"), "--no-explain",
		"-o", filepath.Join("other", "report.md"), "-j", other, "--signing-key", otherKey); r.code != 0 {
		t.Fatalf("audit with another key: %d %s", r.code, r.stderr)
	}
	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"violation", js, `"severity": "critical"`, `"severity": "low"`, "content altered"},
		{"risk score", js, `"risk_score": 50`, `"risk_score": 0`, "risk_score altered: 0, signed 50"},
		{"step", js, `"step_id": "s2"`, `"step_id": "s9"`, "steps altered"},
		{"report.md", md, "**Risk Score:** 50/100", "**Risk Score:** 0/100", "content altered"},
		{"report.md beside the audit", md, "[CRITICAL]", "[LOW]", "the report.md beside it was altered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := origJS
			if tc.file == md {
				orig = origMD
			}
			if !bytes.Contains(orig, []byte(tc.old)) {
				t.Fatalf("%s lacks %s", tc.file, tc.old)
			}
			if err := os.WriteFile(tc.file, bytes.Replace(orig, []byte(tc.old), []byte(tc.new), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(tc.file, orig, 0o644)
			target := tc.file
			if strings.Contains(tc.name, "beside") {
				target = js
			}
			r := troyctl(t, "verify", target)
			if r.code != exitFound || r.stderr != "troyctl: "+target+": "+firstLine(r.stderr, target) || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 3 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
	if r := troyctl(t, "verify", js, md); r.code != 0 {
		t.Fatalf("restored files verify: %d %s", r.code, r.stderr)
	}
	// Signed by another key: valid in itself, not by the expected key.
	if r := troyctl(t, "verify", other); r.code != exitFound || !strings.Contains(r.stderr, "troyctl: "+other+": signed by key ") {
		t.Errorf("another key: exit %d %s", r.code, r.stderr)
	}
	if r := troyctl(t, "verify", other, "--public-key", otherKey); r.code != 0 {
		t.Errorf("another key, expected: exit %d %s", r.code, r.stderr)
	}
	// Not signed at all.
	if err := os.WriteFile("plain.json", reporter.Unsigned(origJS), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := troyctl(t, "verify", "plain.json"); r.code != exitFound || r.stderr != `troyctl: plain.json: no signature: audit.json has no "signature" member (written unsigned, or by another tool)`+"\n" {
		t.Errorf("unsigned: exit %d %q", r.code, r.stderr)
	}
	// Usage errors and unreadable files: exit 2, one line.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"verify"}, "troyctl: verify: expected at least one FILE (an audit.json or report.md)\n"},
		{[]string{"verify", "missing.json"}, "troyctl: missing.json: open missing.json: no such file or directory\n"},
		{[]string{"verify", js, "--public-key", "ed25519:nope"}, "troyctl: public key \"ed25519:nope\": expected ed25519:BASE64 or a file holding it: open ed25519:nope: no such file or directory\n"},
		{[]string{"verify", js, "--bogus"}, "troyctl: verify: unknown flag: --bogus (see troyctl verify --help)\n"},
		{[]string{"verify", js, "--data-dir", "nowhere"}, "troyctl: signing key: open nowhere/auth/signing.key: no such file or directory (troyctl serve --data-dir nowhere creates it on first start)\n"},
	} {
		if r := troyctl(t, tc.args...); r.code != exitUsage || r.stderr != tc.want {
			t.Errorf("%v: exit %d %q, want 2 %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	// An altered file among others: 3 wins over an unreadable one.
	os.WriteFile(js, bytes.Replace(origJS, []byte(`"risk_score": 50`), []byte(`"risk_score": 1`), 1), 0o644)
	if r := troyctl(t, "verify", "missing.json", js, md); r.code != exitFound || strings.Count(r.stderr, "\n") != 2 {
		t.Errorf("mixed: exit %d %s", r.code, r.stderr)
	}
}

// firstLine is the message of the one line stderr holds for file, or "" when it holds more.
func firstLine(stderr, file string) string {
	if strings.Count(stderr, "\n") != 1 {
		return ""
	}
	return strings.TrimPrefix(stderr, "troyctl: "+file+": ")
}
