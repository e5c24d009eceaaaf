package explainer

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/troy-audit/troy/schemas"
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

func TestChecksumsTellNumbersApart(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) bool
		valid []string
		wrong []string
	}{
		{"card", card, []string{"4111 1111 1111 1111", "378282246310005", "2223003122003222"}, []string{"4111 1111 1111 1112", "1234567812345670", "0000000000000000"}},
		{"ssn", validSSN, []string{"123-45-6789", "078051120"}, []string{"000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"}},
		{"bsn", elevenProof, []string{"111222333", "123456782"}, []string{"111222334", "000000000"}},
		{"aadhaar", func(s string) bool { return verhoeff(digitsOf(s)) }, []string{"2345 6789 0124"}, []string{"2345 6789 0123"}},
		{"cpf", func(s string) bool { return cpf(digitsOf(s)) }, []string{"529.982.247-25"}, []string{"529.982.247-26", "111.111.111-11"}},
		{"dni", dni, []string{"12345678Z", "X1234567L"}, []string{"12345678A", "X1234567A"}},
		{"china", chinaID, []string{"11010519491231002X"}, []string{"110105194912310021"}},
		{"nir", nir, []string{"1 85 05 78 006 084 91", "2 69 05 2A 006 084 20"}, []string{"1 85 05 78 006 084 36"}},
		{"iban", func(s string) bool { return mod97(strings.ToUpper(strings.ReplaceAll(s, " ", ""))) }, []string{"DE89 3704 0044 0532 0130 00", "gb82west12345698765432"}, []string{"DE00 3704 0044 0532 0130 00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range tt.valid {
				if !tt.check(v) {
					t.Errorf("%q refused", v)
				}
			}
			for _, v := range tt.wrong {
				if tt.check(v) {
					t.Errorf("%q accepted", v)
				}
			}
		})
	}
}

func TestSecretNamesAreToldFromOrdinaryOnes(t *testing.T) {
	tests := []struct{ name, kind string }{
		{"password", "PASSWORD"}, {"DB_PASSWORD", "PASSWORD"}, {"PGPASSWORD", "PASSWORD"}, {"apiKey", "PASSWORD"},
		{"X-Api-Key", "PASSWORD"}, {"client_secret", "PASSWORD"}, {"spring.datasource.password", "PASSWORD"},
		{"pw", "PASSWORD"}, {"refreshToken", "PASSWORD"}, {"access_key_id", "PASSWORD"}, {"pin", "PASSWORD"},
		{"ssn", "SSN"}, {"social_security_number", "SSN"}, {"passport_no", "NATIONAL_ID"}, {"iban", "IBAN"},
		{"card_number", "CARD"}, {"phone", "PHONE"}, {"mobileNumber", "PHONE"},
		{"key", "SECRET"}, {"key_id", "SECRET"}, {"kid", "SECRET"},
		{"password_policy", ""}, {"token_type", ""}, {"secret_name", ""}, {"max_tokens", ""}, {"keyboard", ""},
		{"monkey", ""}, {"company", ""}, {"auth_method", ""}, {"password_expiry_days", ""}, {"status", ""},
	}
	for _, tt := range tests {
		if kind, _ := secretName(tt.name); kind != tt.kind {
			t.Errorf("%s: kind %q, want %q", tt.name, kind, tt.kind)
		}
	}
}

func TestDatesAreNotPhoneNumbers(t *testing.T) {
	for s, want := range map[string]bool{
		"2024-01-15": true, "15/01/2024": true, "01-15-2024 10:30": true, "15.01.24": true, "2024-01-15T10:30": true,
		"06-12-34-56-78": false, "415.555.2671": false, "2024-13-45": false, "06 12 34 56 78": false,
	} {
		if got := isDate(s); got != want {
			t.Errorf("isDate(%q) = %v", s, got)
		}
	}
}

// Values are redacted by what they hold and by the key that holds them; keys too.
func TestRedactValueKeysNumbersAndNestedJSON(t *testing.T) {
	r := newRedactor(t)
	got := compact(r.Value(map[string]any{
		"jane@example.com":  "contact",
		"[EMAIL_1]":         "already a placeholder",
		"card":              json.Number("4111111111111111"),
		"charged":           4242424242424242.0,
		"pin":               4821,
		"amount":            4155552675,
		"body":              `{"user": "ana", "password": "hunter22"}`,
		"nested":            []any{`{"inner": "{\"api_key\": \"k-123456789\"}"}`},
		"description":       "nothing to hide",
		"order_total_cents": 129999,
		"api_keys":          []any{"k-123456789", []any{"k-987654321"}},
	}))
	// Keys are taken in order: the literal "[EMAIL_1]" first, so jane's key gets "#2"; the
	// key in the nested JSON is the first of api_keys, so it gets the same placeholder.
	want := `{"[EMAIL_1]":"already a placeholder","[EMAIL_1]#2":"contact","amount":4155552675,"api_keys":["[PASSWORD_1]",["[PASSWORD_2]"]],"body":"{\"password\":\"[PASSWORD_3]\",\"user\":\"ana\"}","card":"[CARD_1]","charged":"[CARD_2]","description":"nothing to hide","nested":["{\"inner\":\"{\\\"api_key\\\":\\\"[PASSWORD_1]\\\"}\"}"],"order_total_cents":129999,"pin":"[PASSWORD_4]"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if again := compact(r.Value(r.Value(map[string]any{"x": "call +14155552673"}))); again != `{"x":"call [PHONE_1]"}` {
		t.Fatalf("redacting a redacted value: %s", again)
	}
}

// gitleaks' rules load, and the end every rule demands of a secret is widened for step
// data; if gitleaks writes its ends differently one day, this says so.
func TestGitleaksRulesLoadAndAcceptStepDataEnds(t *testing.T) {
	rs, err := compileRules()
	if err != nil {
		t.Fatal(err)
	}
	widened := 0
	for _, r := range rs.keyed {
		if strings.Contains(r.re.String(), `/)\]}>,|&?#!.:]`) {
			widened++
		}
	}
	if len(rs.keyed) < 200 || widened < 100 {
		t.Fatalf("%d rules with keywords, %d with widened ends", len(rs.keyed), widened)
	}
	for _, s := range []string{"(ghp_R8ZwDqI2pQm0xjT5Lk7VbN3sYc9Hf1Ga4Eu6)", "key: dop_v1_2025a03f41a6d7e4189c31dbbec4253a132f6020c5f064b6036cbf0508ebeca3/2"} {
		if got := newRedactor(t).String(s); strings.Contains(got, "R8ZwDqI2") || strings.Contains(got, "2025a03f41a6") {
			t.Errorf("not redacted: %q", got)
		}
	}
}

// Without rules nothing is asked: every step says why.
func TestNothingIsSentWhenRulesDoNotLoad(t *testing.T) {
	tr := &schemas.Trace{TraceID: "t", Steps: []*schemas.Step{{StepID: "s1"}, {StepID: "s2"}}}
	res := refuseUnredacted(tr, errors.New("broken"))
	if len(res.Explanations) != 2 || res.Explanations[1].StepID != "s2" || !strings.Contains(res.Explanations[1].Error, "redaction rules did not load: broken") ||
		res.Summary.Error == "" || res.Usage.Calls != 0 || !strings.Contains(res.Note, "broken") {
		t.Fatalf("%+v", res)
	}
}
