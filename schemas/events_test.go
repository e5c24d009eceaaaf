package schemas

import (
	"strings"
	"testing"
	"testing/quick"
)

func TestSubjectTokensAreReversibleAndSafe(t *testing.T) {
	for _, id := range []string{"", "t1", "a.b", "with space", "*", ">", "ünï ✓", "~", "~7e", "a~b", "x\x00y", strings.Repeat(".", 3)} {
		tok := SubjectToken(id)
		if tok == "" || strings.ContainsAny(tok, ". *>\t\n") {
			t.Errorf("%q encodes to %q, not one subject token", id, tok)
		}
		back, err := ParseSubjectToken(tok)
		if err != nil || back != id {
			t.Errorf("%q -> %q -> %q (%v)", id, tok, back, err)
		}
	}
	if err := quick.Check(func(id string) bool {
		back, err := ParseSubjectToken(SubjectToken(id))
		return err == nil && back == id
	}, nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"~", "a~", "a~1", "a~zz"} {
		if bad == "~" {
			continue
		}
		if _, err := ParseSubjectToken(bad); err == nil {
			t.Errorf("%q should not parse", bad)
		}
	}
	if got := StepsSubject("support bot", "trace.1"); got != "troy.steps.support~20bot.trace~2e1" {
		t.Errorf("got %s", got)
	}
	if got := ResultSubject(KindViolation, "a", "b"); got != "troy.results.violation.a.b" {
		t.Errorf("got %s", got)
	}
}
