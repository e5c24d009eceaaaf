package explainer

import (
	"strings"
	"testing"
)

func newRedactor(t testing.TB) *Redactor {
	t.Helper()
	r, err := NewRedactor()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

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
		{"aws key", "AKIAQYLPMN5HHHFPZAM2", "[API_KEY_1]"},
		{"github token", "ghp_0123456789abcdefghijklmnopqrstuvwxyz", "[API_KEY_1]"},
		{"slack token", "xoxb-1234567890-abcdefghij", "[API_KEY_1]"},
		{"bearer", "Authorization: Bearer abc.def-ghi_123456", "Authorization: Bearer [TOKEN_1]"},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "[TOKEN_1]"},
		{"password kv", "login user=bob password=hunter2!x&next=1", "login user=bob password=[PASSWORD_1]&next=1"},
		{"password quoted", `db_password: "s3cr3t value"`, `db_password: "[PASSWORD_1]"`},
		{"private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "[PRIVATE_KEY_1]"},
		{"high entropy", "session Zx9Qm2Lr7Tb4Wk1Yp8Nv3Hd6Fs0Gc5Ja2 end", "session [SECRET_1] end"},
		// What an attacker's review found leaking.
		{"url password localhost", "postgres://admin:Tr0ub4dor@localhost:5432/app", "postgres://admin:[PASSWORD_1]@localhost:5432/app"},
		{"url password ip", "mysql://root:S3cretPw@10.0.0.5/db", "mysql://root:[PASSWORD_1]@10.0.0.5/db"},
		{"curl -u", "curl -u deploy:hunter22 https://ci.local/api", "curl -u [PASSWORD_1] https://ci.local/api"},
		{"pw field", "user=bob&pw=letmein99", "user=bob&pw=[PASSWORD_1]"},
		{"db_password", "db_password=swordfish7", "db_password=[PASSWORD_1]"},
		{"json in a string", `{"config": "{\"password\": \"pa55word\"}"}`, `{"config":"{\"password\":\"[PASSWORD_1]\"}"}`},
		{"basic auth", "Authorization: Basic YWRtaW46aHVudGVyMg==", "Authorization: Basic [TOKEN_1]"},
		{"e164", "sms +14155552673 now", "sms [PHONE_1] now"},
		{"dotted phone", "415.555.2674", "[PHONE_1]"},
		{"bare phone", "ring 4155552675 later", "ring [PHONE_1] later"},
		{"french phone", "+33 6 12 34 56 78", "[PHONE_1]"},
		{"ssn without dashes", "SSN: 123456789", "SSN: [SSN_1]"},
		{"lowercase iban", "iban de89370400440532013000", "iban [IBAN_1]"},
		{"key id", `key_id: 3f786850e387550fdab836ed7e6dc881de23001b`, `key_id: [SECRET_1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newRedactor(t).String(tt.in); got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// One value gets one placeholder everywhere in a trace, so data flow stays visible.
func TestRedactIsConsistentWithinATrace(t *testing.T) {
	r := newRedactor(t)
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
