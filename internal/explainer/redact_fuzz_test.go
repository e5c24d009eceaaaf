package explainer

import (
	"strings"
	"testing"
)

// plants are sensitive values redaction must take out of any text they stand in, set
// apart by spaces: the text planted and the part of it that must not remain.
var plants = []struct{ text, secret string }{
	{"jane.doe@example.com", "jane.doe@example.com"},
	{"+14155552673", "4155552673"},
	{"4111 1111 1111 1111", "4111 1111 1111 1111"},
	{"4242424242424242", "4242424242424242"},
	{"123-45-6789", "123-45-6789"},
	{"DE89 3704 0044 0532 0130 00", "3704 0044 0532 0130"},
	{"gb82west12345698765432", "12345698765432"},
	{"ghp_R8ZwDqI2pQm0xjT5Lk7VbN3sYc9Hf1Ga4Eu6", "R8ZwDqI2pQm0xjT5Lk7VbN3sYc9Hf1Ga4Eu6"},
	{"AKIAQYLPMN5HHHFPZAM2", "QYLPMN5HHHFPZAM2"},
	{"postgres://admin:Tr0ub4dor99@localhost/db", "Tr0ub4dor99"},
	{"password=Hunter2Secret", "Hunter2Secret"},
	{"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"},
	{"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4Ur2Vq9bT7kLmN0pQsWcYd3Zf8Hj1Gb6Ae5\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEAx4Ur2Vq9bT7kLmN0pQsWcYd3Zf8Hj1Gb6Ae5"},
}

// FuzzRedact checks, for any text around a planted value, that redaction does not panic,
// that the planted value never remains, and that redacting again changes nothing.
func FuzzRedact(f *testing.F) {
	for i, p := range plants {
		f.Add("", "", uint8(i))
		f.Add("order 12", "today", uint8(i))
		f.Add(`{"note": "`, `"}`, uint8(i))
		f.Add("password=", "&next=%2F", uint8(i))
		f.Add(p.text, p.text, uint8(i))
	}
	f.Fuzz(func(t *testing.T, before, after string, pick uint8) {
		p := plants[int(pick)%len(plants)]
		in := before + " " + p.text + " " + after
		// The text around may hold the value itself; only the planted copy must go.
		already := strings.Count(before+" \x00 "+after, p.secret)
		r := newRedactor(t)
		out := r.String(in)
		if strings.Count(out, p.secret) > already {
			t.Fatalf("%q remained in\n%q\nfrom\n%q", p.secret, out, in)
		}
		if again := r.String(out); again != out {
			t.Fatalf("redacting again changed\n%q\ninto\n%q", out, again)
		}
		v := r.Value(map[string]any{before: []any{in, map[string]any{after: in}}})
		if s := compact(v); already == 0 && strings.Contains(s, p.secret) {
			t.Fatalf("%q remained in the value\n%s", p.secret, s)
		}
	})
}
