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

// streamConfigs reads the configuration of troy's streams, and of the streams under its
// buckets (KV_…), from a running deployment.
func streamConfigs(t *testing.T, url string) map[string]jetstream.StreamConfig {
	t.Helper()
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
	out := map[string]jetstream.StreamConfig{}
	for _, name := range []string{bus.StepsStream, bus.ResultsStream, bus.DeadStream, "KV_" + bus.PolicyBucket, "KV_" + bus.CacheBucket} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		out[name] = s.CachedInfo().Config
	}
	return out
}

// serve's retention flags reach every stream it declares, and the age the explanation
// cache; a second instance started without them leaves them as they are.
func TestServeRetention(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startServe(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--policy", "minimal", "--retain", "720h", "--retain-bytes", "2GiB")
	check := func(when string) {
		t.Helper()
		cfgs := streamConfigs(t, url)
		for _, name := range []string{bus.StepsStream, bus.ResultsStream, bus.DeadStream} {
			if c := cfgs[name]; c.MaxAge != 720*time.Hour || c.MaxBytes != 2<<30 {
				t.Errorf("%s: %s: age %s, bytes %d", when, name, c.MaxAge, c.MaxBytes)
			}
		}
		if age := cfgs["KV_"+bus.CacheBucket].MaxAge; age != 720*time.Hour {
			t.Errorf("%s: explanation cache keeps replies for %s", when, age)
		}
	}
	check("first instance")
	startServe(t, "--nats", url, "--only", "guard")
	check("after a second instance without the flags")
}
