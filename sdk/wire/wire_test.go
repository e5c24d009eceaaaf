package wire_test

import (
	"errors"
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
