package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

func sha(body string) string {
	sum := sha256.Sum256([]byte(body))
	return hex.EncodeToString(sum[:])
}

const uploadPolicy = `{"policy_id": "uploaded", "rules": [
 {"rule_id": "no-wire", "description": "No wire transfers", "condition": "step.description == 'wire_money'", "severity": "critical", "weight": 70}]}`

// The same rule in the Python tool's dialect, converted as a policy file's is.
const uploadPythonPolicy = `{"policy_id": "uploaded-py", "rules": [
 {"rule_id": "no-wire", "description": "No wire transfers", "condition": "step['description'] == 'wire_money' and get(step, 'metadata.approved') is not True"}]}`

func TestPutPolicy(t *testing.T) {
	srv, b := deploymentWithBus(t)
	tests := []struct {
		name, method, hash, auth, body string
		status                         int
		code, inMessage                string
		policyID                       string
		rules                          int
	}{
		{"a policy", "PUT", sha(uploadPolicy), token, uploadPolicy, 200, "", "", "uploaded", 1},
		{"the same again", "PUT", sha(uploadPolicy), token, uploadPolicy, 200, "", "", "uploaded", 1},
		{"upper-case hash", "PUT", strings.ToUpper(sha(uploadPolicy)), token, uploadPolicy, 200, "", "", "uploaded", 1},
		{"Python dialect", "PUT", sha(uploadPythonPolicy), token, uploadPythonPolicy, 200, "", "", "uploaded-py", 1},
		{"no token", "PUT", sha(uploadPolicy), "", uploadPolicy, 401, "unauthorized", "", "", 0},
		{"another body's hash", "PUT", sha(uploadPolicy + " "), token, uploadPolicy, 400, "hash_mismatch", "not the", "", 0},
		{"not a hash", "PUT", "abc", token, uploadPolicy, 400, "invalid", "SHA-256", "", 0},
		{"not hex", "PUT", strings.Repeat("g", 64), token, uploadPolicy, 400, "invalid", "SHA-256", "", 0},
		{"no rules", "PUT", sha(`{"policy_id": "x"}`), token, `{"policy_id": "x"}`, 400, "invalid_policy", "rules: required field is missing", "", 0},
		{"not JSON", "PUT", sha(`{"rules": [`), token, `{"rules": [`, 400, "invalid_policy", "uploaded policy", "", 0},
		{"a condition that does not compile", "PUT", sha(`{"rules": [{"rule_id": "r", "description": "d", "condition": "step.(("}]}`), token,
			`{"rules": [{"rule_id": "r", "description": "d", "condition": "step.(("}]}`, 400, "invalid_policy", `rule "r"`, "", 0},
		{"oversize", "PUT", sha(strings.Repeat(" ", 5000) + uploadPolicy), token, strings.Repeat(" ", 5000) + uploadPolicy, 413, "too_large", "limit", "", 0},
		{"wrong method", "GET", sha(uploadPolicy), token, "", 405, "method_not_allowed", "expected PUT", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, srv, tt.method, "/v1/policies/"+tt.hash, tt.auth, tt.body)
			if r.status != tt.status || errorCode(r) != tt.code {
				t.Fatalf("%d %s, want %d %q", r.status, r.raw, tt.status, tt.code)
			}
			if tt.code != "" {
				msg, _ := r.body["error"].(map[string]any)["message"].(string)
				if !strings.Contains(msg, tt.inMessage) || strings.Contains(msg, "\n") {
					t.Fatalf("message %q: want one line with %q", msg, tt.inMessage)
				}
				return
			}
			if r.body["policy_id"] != tt.policyID || r.body["rules"] != float64(tt.rules) {
				t.Fatalf("answer %s", r.raw)
			}
			hash, _ := r.body["policy"].(string)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			raw, err := b.GetPolicy(ctx, hash)
			if err != nil {
				t.Fatal(err)
			}
			// What is stored is the policy troy runs, under its own content hash.
			p, err := policies.Parse(raw, "stored", "stored")
			if err != nil || p.Hash() != hash || p.PolicyID != tt.policyID || p.IsPython() {
				t.Fatalf("stored %s (hash %s, parse error %v)", raw, hash, err)
			}
		})
	}
}

// A check that names an uploaded policy is decided by it, not by the default policy.
func TestPutPolicyThenCheck(t *testing.T) {
	srv := deployment(t)
	hashes := map[string]string{}
	for _, body := range []string{uploadPolicy, uploadPythonPolicy} {
		r := call(t, srv, "PUT", "/v1/policies/"+sha(body), token, body)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		hashes[body], _ = r.body["policy"].(string)
	}
	tests := []struct {
		policy, action, meta string
		allowed              bool
		rule                 string
	}{
		{hashes[uploadPolicy], "wire_money", `{}`, false, "no-wire"},
		{hashes[uploadPolicy], "search", `{}`, true, ""},
		// The default policy (examples/policy.json) would block this one; the uploaded one does not.
		{hashes[uploadPolicy], "bash", `{"permission_level": "admin"}`, true, ""},
		{hashes[uploadPythonPolicy], "wire_money", `{}`, false, "no-wire"},
		{hashes[uploadPythonPolicy], "wire_money", `{"approved": true}`, true, ""},
		{"", "bash", `{"permission_level": "admin"}`, false, "privileged-escalation-guard"},
	}
	for i, tt := range tests {
		body := fmt.Sprintf(`{"session": "up-%d", "agent": "bot", "policy": %q, "step": {"action": %q, "metadata": %s}}`, i, tt.policy, tt.action, tt.meta)
		r := call(t, srv, "POST", "/v1/guard/check", token, body)
		if r.status != 200 {
			t.Fatalf("%d: %d %s", i, r.status, r.raw)
		}
		var d schemas.Decision
		if err := json.Unmarshal([]byte(r.raw), &d); err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tt.allowed || (tt.rule != "" && (len(d.Violations) == 0 || d.Violations[0].RuleID != tt.rule)) {
			t.Fatalf("%d (%s): %+v", i, tt.action, d)
		}
	}
}

// FuzzPutPolicy uploads arbitrary bodies under their own hash: no input panics, a policy
// is stored (200) or refused with a 4xx JSON error of one line.
func FuzzPutPolicy(f *testing.F) {
	g := fuzzGateway(f)
	for _, s := range []string{uploadPolicy, uploadPythonPolicy, `{"rules": []}`, `{"rules": [{"rule_id": "r"}]}`, `null`, `{"rules": [{"rule_id": "r", "description": "d", "condition": "any_prev(lambda s: s['x'"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("PUT", "/v1/policies/"+sha(string(body)), bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		switch {
		case rec.Code == http.StatusOK:
		case rec.Code >= 400 && rec.Code < 500:
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || strings.Contains(e.Error.Message, "\n") {
				t.Fatalf("status %d with %q (%v)", rec.Code, rec.Body, err)
			}
		default:
			t.Fatalf("status %d for a body's content: %s", rec.Code, rec.Body)
		}
	})
}
