package bus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/troy-audit/troy/event"
)

// A server with file storage listening on loopback, and a second connection to it over
// TCP, as an agent or a stage in another process would have.
func openLoopback(b *testing.B) (server, client *Bus) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	server, err = Open(context.Background(), Options{DataDir: b.TempDir(), Listen: addr})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(server.Close)
	client, err = Open(context.Background(), Options{URL: "nats://" + addr, Client: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(client.Close)
	return server, client
}

// BenchmarkRequestReply is the floor under a guard check: one request and its reply over
// loopback, through the server, to a service that answers at once. ns/op is the latency.
func BenchmarkRequestReply(b *testing.B) {
	server, client := openLoopback(b)
	stop, err := server.AddService("echo", "1.0.0", "answers at once", []Endpoint{{Name: "echo", Subject: "bench.echo",
		Handle: func(_ context.Context, data []byte) ([]byte, error) { return data, nil }}}, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stop() }()
	ctx := context.Background()
	payload := make([]byte, 512)
	for b.Loop() {
		if _, err := client.Request(ctx, "bench.echo", payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishStored is the other part of a guard check: storing a step in the file
// stream and waiting for the acknowledgement.
func BenchmarkPublishStored(b *testing.B) {
	_, client := openLoopback(b)
	ctx := context.Background()
	e := env(b, "troy.steps.bench.t", event.KindStep, "", map[string]string{"pad": string(make([]byte, 512))})
	for b.Loop() {
		if err := client.Publish(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadTrace reads a trace of 50 events back over loopback, as the explainer,
// the reporter and the sink do for each trace: the leader's last sequence, then batched
// direct gets.
func BenchmarkReadTrace(b *testing.B) {
	_, client := openLoopback(b)
	ctx := context.Background()
	const subject = "troy.steps.bench.read"
	n := storeTrace(b, client, subject, 50, 512)
	for b.Loop() {
		got, err := client.ReadSteps(ctx, subject, math.MaxUint64)
		if err != nil || len(got) != n {
			b.Fatal(len(got), err)
		}
	}
}

// BenchmarkStoreBatch stores 8 steps of 0.5 KB, as 8 concurrent checks of the guard would,
// on the guard's in-process connection to a file stream, and waits until all 8 are
// acknowledged: each with its own publish and acknowledgement (the guard before batching),
// all published at once and their acknowledgements awaited together (with the client's
// asynchronous publishing, and with PublishEach, the guard's), and as one atomic batch
// (one acknowledgement for the 8). ns/op is per 8 steps.
func BenchmarkStoreBatch(b *testing.B) {
	const n = 8
	server, _ := openLoopback(b)
	ctx := context.Background()
	if _, err := server.js.CreateStream(ctx, jetstream.StreamConfig{Name: "BATCH", Subjects: []string{"batch.>"},
		Storage: jetstream.FileStorage, AllowAtomicPublish: true}); err != nil {
		b.Fatal(err)
	}
	var ids atomic.Int64 // de-duplication ids, unique over every run
	msgs := func() []*nats.Msg {
		out := make([]*nats.Msg, n)
		for i := range out {
			out[i] = nats.NewMsg(fmt.Sprintf("batch.%d", i))
			out[i].Data = make([]byte, 512)
			out[i].Header.Set(jetstream.MsgIDHeader, fmt.Sprint(ids.Add(1)))
		}
		return out
	}
	b.Run("each", func(b *testing.B) {
		for b.Loop() {
			var wg sync.WaitGroup
			for _, m := range msgs() {
				wg.Go(func() {
					if _, err := server.js.PublishMsg(ctx, m); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
		}
	})
	b.Run("async", func(b *testing.B) {
		for b.Loop() {
			var futures []jetstream.PubAckFuture
			for _, m := range msgs() {
				f, err := server.js.PublishMsgAsync(m)
				if err != nil {
					b.Fatal(err)
				}
				futures = append(futures, f)
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("PublishEach", func(b *testing.B) {
		envs := make([]event.Envelope, n)
		for b.Loop() {
			for i := range envs {
				envs[i] = event.Envelope{Subject: fmt.Sprintf("batch.%d", i), Kind: event.KindStep, MsgID: fmt.Sprint(ids.Add(1)), Data: make([]byte, 512)}
			}
			if _, errs := server.PublishEach(ctx, envs); errors.Join(errs...) != nil {
				b.Fatal(errors.Join(errs...))
			}
		}
	})
	b.Run("atomic", func(b *testing.B) {
		for b.Loop() {
			if _, err := jetstreamext.PublishMsgBatch(ctx, server.js, msgs(),
				jetstreamext.BatchFlowControl{AckFirst: false}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFirstStep is the question the evaluator asks when a trace starts: the first
// event stored on its subject. The embedded server's own stream answers a direct get;
// a cluster's leader answers the message get API.
func BenchmarkFirstStep(b *testing.B) {
	server, _ := openLoopback(b)
	ctx := context.Background()
	const subject = "troy.steps.bench.first"
	storeTrace(b, server, subject, 20, 1024)
	for _, bb := range []struct {
		name string
		get  func(context.Context, string, msgGetRequest) (event.Envelope, error)
	}{{"direct", server.directGet}, {"leader", server.leaderGet}} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if e, err := bb.get(ctx, StepsStream, msgGetRequest{Seq: 1, NextFor: subject}); err != nil || e.Seq == 0 {
					b.Fatal(e.Seq, err)
				}
			}
		})
	}
}

// storeTrace stores n events of pad bytes each on a subject of the steps stream and
// returns n.
func storeTrace(b *testing.B, bus *Bus, subject string, n, pad int) int {
	b.Helper()
	events := make([]event.Envelope, n)
	for i := range events {
		events[i] = env(b, subject, event.KindStep, "", map[string]string{"pad": string(make([]byte, pad))})
	}
	if err := bus.PublishAll(context.Background(), events); err != nil {
		b.Fatal(err)
	}
	return n
}
