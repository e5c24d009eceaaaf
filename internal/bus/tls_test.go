package bus_test

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/tlstest"
)

// With a certificate the embedded server speaks TLS to its clients: one that trusts the
// CA connects and round-trips a request, one that does not fails the handshake, and the
// bus's own in-process connection works as before.
func TestEmbeddedServerTLS(t *testing.T) {
	certs := tlstest.New(t, "troy nats")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", TLSCert: certs.Cert, TLSKey: certs.Key})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	url := b.ClientURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("client URL %s, want tls://", url)
	}
	sub, err := b.Conn().Subscribe("tls.echo", func(m *nats.Msg) { _ = m.Respond(append([]byte("echo "), m.Data...)) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	nc, err := nats.Connect(url, nats.RootCAs(certs.CA), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("a client trusting the CA: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	if m, err := nc.RequestWithContext(ctx, "tls.echo", []byte("hi")); err != nil || string(m.Data) != "echo hi" {
		t.Fatalf("a request over TLS: %v %v", m, err)
	}

	other := tlstest.New(t, "someone else")
	_, err = nats.Connect(url, nats.RootCAs(other.CA), nats.Timeout(10*time.Second), nats.NoReconnect())
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("a client trusting another CA: %v, want an unknown authority", err)
	}
	if _, err := nats.Connect(strings.Replace(url, "tls://", "nats://", 1), nats.Timeout(10*time.Second), nats.NoReconnect()); err == nil {
		t.Fatal("a client without TLS connected")
	}
}

func TestEmbeddedServerTLSNeedsBoth(t *testing.T) {
	certs := tlstest.New(t, "troy nats")
	_, err := bus.Open(context.Background(), bus.Options{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", TLSCert: certs.Cert})
	if err == nil || !strings.Contains(err.Error(), "needs both a certificate and a key file") {
		t.Fatalf("a certificate without a key: %v", err)
	}
}
