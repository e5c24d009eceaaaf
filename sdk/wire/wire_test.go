package wire_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/sdk/wire"
)

// An event becomes a message with its kind in a header; a subject NATS would close the
// connection for is refused before it is sent, as a permanent error.
func TestMessage(t *testing.T) {
	e := event.Envelope{Subject: "troy.steps.a.t", Kind: event.KindStep, MsgID: "step|r|t|0", Data: []byte(`{}`)}
	m, err := wire.Message(e)
	if err != nil || m.Subject != e.Subject || m.Header.Get(event.KindHeader) != "step" || string(m.Data) != "{}" {
		t.Fatalf("message %+v, %v", m, err)
	}
	if len(wire.PublishOpts(e)) != 1 || len(wire.PublishOpts(event.Envelope{})) != 0 {
		t.Fatal("an event has a de-duplication option exactly when it has an id")
	}
	e.Subject = "troy.steps." + strings.Repeat("x", wire.MaxSubject)
	_, err = wire.Message(e)
	var perm *event.Permanent
	if !errors.Is(err, wire.ErrSubjectTooLong) || !errors.As(err, &perm) {
		t.Fatalf("a subject of %d bytes: %v", len(e.Subject), err)
	}
}

// Connection options: one way of proving who the client is, and TLS when asked for; a
// seed file that cannot be read is an error naming it.
func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth wire.Auth
		want int // options beyond name, reconnects and their pause
	}{
		{"none", wire.Auth{}, 0},
		{"user", wire.Auth{User: "u", Password: "p"}, 1},
		{"token wins over user", wire.Auth{Token: "t", User: "u"}, 1},
		{"creds file wins", wire.Auth{CredsFile: "x.creds", Token: "t"}, 1},
		{"tls with a CA", wire.Auth{CAFile: "ca.pem"}, 2},
		{"client certificate", wire.Auth{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}, 3},
	} {
		opts, err := wire.Options("agent", tc.auth)
		if err != nil || len(opts) != 3+tc.want {
			t.Errorf("%s: %d options, %v; want %d", tc.name, len(opts), err, 3+tc.want)
		}
	}
	if _, err := wire.Options("agent", wire.Auth{NKeyFile: "/nonexistent/seed.nk"}); err == nil || !strings.Contains(err.Error(), "/nonexistent/seed.nk") {
		t.Fatalf("a missing nkey file: %v", err)
	}
}

func TestInboxPrefix(t *testing.T) {
	dir := t.TempDir()
	creds := func(subAllow ...string) string {
		claims, _ := json.Marshal(map[string]any{"sub": "UABC", "nats": map[string]any{"sub": map[string]any{"allow": subAllow}}})
		jwt := "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln"
		return "-----BEGIN NATS USER JWT-----\n" + jwt + "\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAX\n------END USER NKEY SEED------\n"
	}
	for _, tc := range []struct {
		name, file, want, wantErr string
	}{
		{name: "an agent's inbox", file: creds("_INBOX.support-bot.>"), want: "_INBOX.support-bot"},
		{name: "every inbox", file: creds("_INBOX.>")},
		{name: "everything", file: creds(">")},
		{name: "no subscription rules", file: creds()},
		{name: "two rules", file: creds("_INBOX.a.>", "troy.>")},
		{name: "not a creds file", file: "hello", wantErr: "expected a NATS user JWT between its BEGIN and END lines"},
		{name: "a broken JWT", file: "-----BEGIN NATS USER JWT-----\na.!!!.c\n------END NATS USER JWT------", wantErr: "the JWT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".creds")
			if err := os.WriteFile(p, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := wire.InboxPrefix(p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), p) {
					t.Fatalf("%v, want an error naming %s with %q", err, p, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("%q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := wire.InboxPrefix(filepath.Join(dir, "missing.creds")); err == nil {
		t.Fatal("a missing file gave no error")
	}
}
