package provenance

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestExtract(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string // kind:text
	}{
		{"email lowercased", "Send it to Alice.Smith@Example.COM please.", []string{"email:alice.smith@example.com"}},
		{"mailto", "<mailto:bob@corp.io>", []string{"email:bob@corp.io"}},
		{"url and domain", "see https://Evil.Example.com/pay?to=1&x=2, now", []string{"url:https://evil.example.com/pay?to=1&x=2", "domain:evil.example.com"}},
		{"url after key", "link=http://x.org/a", []string{"url:http://x.org/a", "domain:x.org"}},
		{"url with port and user", "ftp://u@Files.Host:21/", []string{"url:ftp://files.host:21", "domain:files.host"}},
		{"bare domain", "upload to attacker.io now", []string{"domain:attacker.io"}},
		{"file name is a path, no domain", "open report.pdf and main.go", []string{"path:report.pdf", "path:main.go"}},
		{"sentences run together", "done.Next step", nil},
		{"iban whole", "IBAN: DE89370400440532013000.", []string{"iban:DE89370400440532013000"}},
		{"iban groups", "pay GB82 WEST 1234 5698 7654 32 today", []string{"iban:GB82WEST12345698765432"}},
		{"iban lowercase", "de89370400440532013000", []string{"iban:DE89370400440532013000"}},
		{"iban bad check is a code", "DE89370400440532013001", []string{"code:DE89370400440532013001"}},
		{"account", "account 12345678901", []string{"account:12345678901"}},
		{"account hyphen groups", "acct 123-456-7890", []string{"account:1234567890"}},
		{"card groups", "card 4111 1111 1111 1111 ok", []string{"account:4111111111111111"}},
		{"date is no account", "on 2026-03-02 at 10:00", nil},
		{"short number", "1234567", nil},
		{"phone", "call +1 (555) 123-4567", []string{"phone:15551234567"}},
		{"phone spaced", "call +44 20 7946 0958.", []string{"phone:442079460958"}},
		{"phone dashed", "+49-30-1234567", []string{"phone:49301234567"}},
		{"phone too short", "+12 345", nil},
		{"unix path", "cat /etc/passwd;", []string{"path:/etc/passwd"}},
		{"home path", "write ~/.ssh/authorized_keys", []string{"path:~/.ssh/authorized_keys"}},
		{"windows path", `type C:\Users\bob\secrets.txt`, []string{`path:C:\Users\bob\secrets.txt`}},
		{"lone slash", "a / b // c", nil},
		{"amount sign", "transfer $1,250.00 now", []string{"amount:USD 1250"}},
		{"amount euro after", "total 99,50€ hmm 300€", []string{"amount:EUR 300"}},
		{"amount code after", "send 5000 USD", []string{"amount:USD 5000"}},
		{"amount code before", "EUR 300.50", []string{"amount:EUR 300.5"}},
		{"lowercase word not code", "the usd 300", nil},
		{"code", "your code is A7K9Q2 and token ghp16x9Zq", []string{"code:A7K9Q2", "code:ghp16x9Zq"}},
		{"letters only no code", "abcdefgh 12345 abc12", nil},
		{"password", "set the password to Sunset2543#.", []string{"code:Sunset2543#"}},
		{"date is no code", "on 2026-12-01 at 10:00", nil},
		{"file name", "remove the file board-minutes.docx from the drive", []string{"path:board-minutes.docx"}},
		{"file name quoted", "share 'Q3_budget.XLSX' now", []string{"path:Q3_budget.XLSX"}},
		{"domain is no file", "visit example.com or www.acme.example", []string{"domain:example.com", "domain:www.acme.example"}},
		{"version is no file", "release 1.2.3 of v2.go", []string{"path:v2.go"}},
		{"repeats once", "a@b.co a@b.co A@B.CO", []string{"email:a@b.co"}},
		{"json", `{"to": "eve@evil.io", "amount": "€20"}`, []string{"email:eve@evil.io", "amount:EUR 20"}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range Extract(tt.text, nil) {
				got = append(got, v.Kind.String()+":"+v.Text)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("Extract(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func TestExtractBounds(t *testing.T) {
	var b strings.Builder
	for i := range 1000 {
		b.WriteString("user")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString("@example.com ")
		b.WriteString("A1B2C3D")
		b.WriteString(strings.Repeat("9", i%40))
		b.WriteByte(' ')
	}
	if got := Extract(b.String(), nil); len(got) != MaxValues {
		t.Errorf("values: got %d, want the bound %d", len(got), MaxValues)
	}
	late := strings.Repeat("x ", MaxBytes) + "bob@example.com"
	if got := Extract(late, nil); len(got) != 0 {
		t.Errorf("a value after MaxBytes was read: %v", got)
	}
	long := "https://example.com/" + strings.Repeat("a", maxWord)
	if got := Extract(long, nil); len(got) != 0 {
		t.Errorf("a word over the bound was read: %v", got)
	}
}

// FuzzExtract checks that extraction stays within its bounds, yields valid normalized
// values at places inside the text, and that a value extracted again is the same value.
func FuzzExtract(f *testing.F) {
	for _, s := range []string{"to bob@x.io $5", "https://a.b/c?d=e", "DE89 3704 0044 0532 0130 00", "+1 555 123 4567", "/etc/passwd C:\\x", "EUR 1,000.00", "A1B2C3", "1234 5678 9012 3456", "delete board-minutes.docx; password Sunset2543#."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vs := Extract(s, nil)
		if len(vs) > MaxValues {
			t.Fatalf("%d values", len(vs))
		}
		seen := map[string]bool{}
		for _, v := range vs {
			if v.Text == "" || seen[v.Text] || v.Kind < Email || v.Kind > Code || v.Pos < 0 || v.Pos >= min(len(s), MaxBytes) {
				t.Fatalf("bad value %+v in %v", v, vs)
			}
			seen[v.Text] = true
			if utf8.ValidString(s) && !utf8.ValidString(v.Text) {
				t.Fatalf("invalid UTF-8 value %q", v.Text)
			}
			switch v.Kind {
			case Email, Domain:
				if v.Text != strings.ToLower(v.Text) {
					t.Fatalf("not lowercased: %q", v.Text)
				}
			case Phone, Account:
				if !allDigits(v.Text) {
					t.Fatalf("not digits: %q", v.Text)
				}
			case IBAN:
				if !ibanValid(v.Text) {
					t.Fatalf("IBAN fails its check: %q", v.Text)
				}
			}
			again := Extract(v.Text, nil)
			found := false
			for _, a := range again {
				found = found || a.Text == v.Text
			}
			if !found && v.Kind != Domain && v.Kind != Phone && v.Kind != Account {
				t.Fatalf("%s %q extracted again gives %v", v.Kind, v.Text, again)
			}
		}
	})
}

// BenchmarkExtract reads texts of growing size; the rate (MB/s) should not fall as they
// grow, up to MaxBytes, where reading stops.
func BenchmarkExtract(b *testing.B) {
	unit := "Please pay invoice 4471 to IBAN DE89 3704 0044 0532 0130 00 or mail billing@example.com; see https://example.com/pay?id=7 for $1,200.00. "
	for _, n := range []int{1 << 10, 16 << 10, 64 << 10} {
		text := strings.Repeat(unit, n/len(unit)+1)[:n]
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			var out []Value
			for b.Loop() {
				out = Extract(text, out[:0])
			}
		})
	}
}

// Pos is where the word a value was read from starts, for values of several words too.
func TestExtractPos(t *testing.T) {
	text := "Pay (DE89 3704 0044 0532 0130 00) and mail 'bob@x.io', then +1 555 123 4567."
	want := map[string]string{"DE89370400440532013000": "DE89", "bob@x.io": "bob@", "15551234567": "+1 555"}
	for _, v := range Extract(text, nil) {
		w, ok := want[v.Text]
		if !ok {
			continue
		}
		if !strings.HasPrefix(text[v.Pos:], w) {
			t.Errorf("%s at %d: %q, want it to start with %q", v.Text, v.Pos, text[v.Pos:], w)
		}
		delete(want, v.Text)
	}
	if len(want) > 0 {
		t.Errorf("not found: %v", want)
	}
}
