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

// serve's retention flags reach every stream it declares, and the age the explanation
// cache; a second instance started without them leaves them as they are.
func TestServeRetention(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startServe(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--policy", "minimal", "--retain", "720h", "--retain-bytes", "2GiB")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check := func(when string) {
		t.Helper()
		for _, name := range []string{bus.StepsStream, bus.ResultsStream, bus.DeadStream} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if c := s.CachedInfo().Config; c.MaxAge != 720*time.Hour || c.MaxBytes != 2<<30 {
				t.Errorf("%s: %s: age %s, bytes %d", when, name, c.MaxAge, c.MaxBytes)
			}
		}
		kv, err := js.KeyValue(ctx, bus.CacheBucket)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := kv.Status(ctx); err != nil || st.TTL() != 720*time.Hour {
			t.Errorf("%s: explanation cache: %v %v", when, st, err)
		}
	}
	check("first instance")
	startServe(t, "--nats", url, "--only", "guard")
	check("after a second instance without the flags")
}
