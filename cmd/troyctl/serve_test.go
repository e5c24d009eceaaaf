package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/bus"
)

// serve's retention flags reach every stream it declares.
func TestServeRetention(t *testing.T) {
	port := freePort(t)
	startServe(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--policy", "minimal", "--retain", "720h", "--retain-bytes", "2GiB")
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{bus.StepsStream, bus.ResultsStream, bus.DeadStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if c := s.CachedInfo().Config; c.MaxAge != 720*time.Hour || c.MaxBytes != 2<<30 {
			t.Errorf("%s: age %s, bytes %d", name, c.MaxAge, c.MaxBytes)
		}
	}
}
