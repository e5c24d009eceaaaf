package explainer

import (
	"strings"
	"testing"
)

func TestRedactFindsEachKind(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"email", "mail jane.doe+x@example.co.uk now", "mail [EMAIL_1] now"},
		{"phone us", "call (415) 555-0100 or +1 415 555 0199", "call [PHONE_1] or [PHONE_2]"},
		{"phone intl", "tel +44 20 7946 0958", "tel [PHONE_1]"},
		{"ssn", "ssn 123-45-6789", "ssn [SSN_1]"},
		{"card", "card 4111 1111 1111 1111 exp", "card [CARD_1] exp"},
		{"card dashes", "4242-4242-4242-4242", "[CARD_1]"},
		{"iban", "to DE89 3704 0044 0532 0130 00 today", "to [IBAN_1] today"},
		{"iban compact", "GB82WEST12345698765432", "[IBAN_1]"},
		{"openai key", "key sk-proj-abcdefghijklmnopqrstuvwx1234", "key [API_KEY_1]"},
		{"aws key", "AKIAIOSFODNN7EXAMPLE", "[API_KEY_1]"},
		{"github token", "ghp_0123456789abcdefghijklmnopqrstuvwxyz", "[API_KEY_1]"},
		{"slack token", "xoxb-1234567890-abcdefghij", "[API_KEY_1]"},
		{"bearer", "Authorization: Bearer abc.def-ghi_123456", "Authorization: Bearer [TOKEN_1]"},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "[TOKEN_1]"},
		{"password kv", "login user=bob password=hunter2!x&next=1", "login user=bob password=[PASSWORD_1]&next=1"},
		{"password quoted", `db_password: "s3cr3t value"`, `db_password: [PASSWORD_1]`},
		{"private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "[PRIVATE_KEY_1]"},
		{"high entropy", "session Zx9Qm2Lr7Tb4Wk1Yp8Nv3Hd6Fs0Gc5Ja2 end", "session [SECRET_1] end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewRedactor().String(tt.in); got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestRedactLeavesOrdinaryTextAlone(t *testing.T) {
	for _, s := range []string{
		"2024-01-15T10:30:00Z",
		"server 192.168.100.200 version 1.22.333",
		"order 12345 for $1,299.99",
		"id 550e8400-e29b-41d4-a716-446655440000",
		"card 4111 1111 1111 1112 fails Luhn",
		"ssn-like 000-12-3456 and 999-12-3456",
		"DE00 0000 0000 0000 0000 00 is no IBAN",
		"/usr/local/lib/python3.11/site-packages/requests/adapters.py",
		"the quick brown fox jumps over the lazy dog",
		"sha 3f786850e387550fdab836ed7e6dc881de23001b",
	} {
		if got := NewRedactor().String(s); got != s {
			t.Errorf("%q became %q", s, got)
		}
	}
}

// One value gets one placeholder everywhere in a trace, so data flow stays visible.
func TestRedactIsConsistentWithinATrace(t *testing.T) {
	r := NewRedactor()
	a := r.String("from a@x.io to b@y.io")
	b := r.Value(map[string]any{"to": "a@x.io", "nested": []any{"b@y.io", map[string]any{"password": "pw1"}}})
	if a != "from [EMAIL_1] to [EMAIL_2]" {
		t.Fatalf("first: %q", a)
	}
	m := b.(map[string]any)
	nested := m["nested"].([]any)
	if m["to"] != "[EMAIL_1]" || nested[0] != "[EMAIL_2]" || nested[1].(map[string]any)["password"] != "[PASSWORD_1]" {
		t.Fatalf("second: %v", b)
	}
	if r.Counts()["EMAIL"] != 2 || r.Counts()["PASSWORD"] != 1 {
		t.Fatalf("counts %v", r.Counts())
	}
}

func TestTruncateMarksWhatWasCut(t *testing.T) {
	got := truncate(strings.Repeat("é", 10), 5) // 20 bytes, cut on a rune boundary
	if got != "éé…[truncated 16 characters]" {
		t.Fatalf("%q", got)
	}
	if truncate("short", 10) != "short" {
		t.Fatal("short text changed")
	}
}
