package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"

	"github.com/nats-io/nats.go"
)

func openMemory(t *testing.T) *Bus {
	t.Helper()
	b, err := Open(context.Background(), Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// env is an event with any body: the bus carries bytes, whatever they hold.
func env(t testing.TB, subject string, kind event.Kind, id string, v any) event.Envelope {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return event.Envelope{Subject: subject, Kind: kind, MsgID: id, Data: data}
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeclareIsIdempotentAndPersists(t *testing.T) {
	dir := t.TempDir()
	b, err := Open(context.Background(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), env(t, "troy.steps.a.t", event.KindStep, "x", map[string]int{"n": 1})); err != nil {
		t.Fatal(err)
	}
	if err := b.PutPolicy(context.Background(), "default", []byte(`{"rules": []}`)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = Open(context.Background(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := b.ReadSteps(context.Background(), "troy.steps.a.t", math.MaxUint64)
	if err != nil || len(got) != 1 || got[0].Kind != event.KindStep || got[0].Seq != 1 {
		t.Fatalf("after a restart: %+v %v", got, err)
	}
	if doc, err := b.GetPolicy(context.Background(), "default"); err != nil || string(doc) != `{"rules": []}` {
		t.Fatalf("policy after restart: %s %v", doc, err)
	}
	if _, err := b.GetPolicy(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), "not stored") {
		t.Fatalf("got %v", err)
	}
}

func TestPublishDeduplicatesAndReadFiltersBySubject(t *testing.T) {
	b := openMemory(t)
	ctx := context.Background()
	for i := range 3 {
		for range 2 { // every publish twice, as a retrying publisher would
			if err := b.Publish(ctx, env(t, "troy.steps.a.t1", event.KindStep, fmt.Sprint("id", i), i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Publish(ctx, env(t, "troy.steps.a.t2", event.KindStep, "", i)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := b.ReadSteps(ctx, "troy.steps.a.t1", math.MaxUint64)
	if err != nil || len(all) != 3 {
		t.Fatalf("t1: %d events, %v", len(all), err)
	}
	upTo, err := b.ReadSteps(ctx, "troy.steps.a.t1", all[1].Seq)
	if err != nil || len(upTo) != 2 {
		t.Fatalf("up to the second: %d, %v", len(upTo), err)
	}
	if none, err := b.ReadSteps(ctx, "troy.steps.a.none", math.MaxUint64); err != nil || len(none) != 0 {
		t.Fatalf("an unknown subject has no events: %v %v", none, err)
	}
	t2, err := b.ReadSteps(ctx, "troy.steps.a.t2", math.MaxUint64)
	if err != nil || len(t2) != 3 {
		t.Fatalf("t2: %d events, %v", len(t2), err)
	}
	for subject, want := range map[string]uint64{"troy.steps.a.t1": all[0].Seq, "troy.steps.a.t2": t2[0].Seq, "troy.steps.a.none": 0} {
		if got, err := b.FirstStep(ctx, subject); err != nil || got != want {
			t.Errorf("FirstStep(%s) = %d, %v; want %d", subject, got, err, want)
		}
		// The embedded server's direct answer is the leader's.
		direct, derr := b.directGet(ctx, StepsStream, msgGetRequest{Seq: 1, NextFor: subject})
		leader, lerr := b.leaderGet(ctx, StepsStream, msgGetRequest{Seq: 1, NextFor: subject})
		if (derr == nil) != (lerr == nil) || derr != nil && !errors.Is(derr, errNoMessage) || !reflect.DeepEqual(direct, leader) {
			t.Errorf("%s: direct get %+v, %v; the leader's %+v, %v", subject, direct, derr, leader, lerr)
		}
	}
}

func TestReadRangeAcrossBatches(t *testing.T) {
	b := openMemory(t)
	ctx := context.Background()
	// Interleave two subjects so that one subject's events are not contiguous, and write
	// more than one batch of them.
	const n = readBatch*2 + 7
	var seqs []uint64
	for i := range n {
		for _, subj := range []string{"troy.steps.a.long", "troy.steps.a.other"} {
			seq, err := b.PublishSeq(ctx, env(t, subj, event.KindStep, "", i))
			if err != nil {
				t.Fatal(err)
			}
			if subj == "troy.steps.a.long" {
				seqs = append(seqs, seq)
			}
		}
	}
	tests := []struct {
		name       string
		from, upTo uint64
		want       []uint64
	}{
		{"all", 0, math.MaxUint64, seqs},
		{"after the first batch", seqs[readBatch-1], math.MaxUint64, seqs[readBatch:]},
		{"up to the middle of the second batch", 0, seqs[readBatch+3], seqs[:readBatch+4]},
		{"a window", seqs[10], seqs[20], seqs[11:21]},
		{"after the end", seqs[n-1], math.MaxUint64, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.ReadRange(ctx, StepsStream, "troy.steps.a.long", tt.from, tt.upTo)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d events, want %d", len(got), len(tt.want))
			}
			for i, e := range got {
				if e.Seq != tt.want[i] || e.Subject != "troy.steps.a.long" || e.Kind != event.KindStep {
					t.Fatalf("event %d: seq %d subject %s kind %s, want seq %d", i, e.Seq, e.Subject, e.Kind, tt.want[i])
				}
			}
		})
	}
}

func run(t *testing.T, b *Bus, c Consumer, h Handler) (*Stats, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stats := &Stats{}
	done := make(chan error, 1)
	go func() { done <- b.Consume(ctx, c, h, stats) }()
	return stats, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestConsumeRetriesAndDeadLetters(t *testing.T) {
	b := openMemory(t)
	ctx := context.Background()
	var mu sync.Mutex
	seen := map[string]int{}
	h := func(_ context.Context, in event.Envelope) ([]event.Envelope, error) {
		mu.Lock()
		seen[in.Subject]++
		n := seen[in.Subject]
		mu.Unlock()
		switch {
		case strings.HasSuffix(in.Subject, ".flaky") && n < 3:
			return nil, errors.New("not yet")
		case strings.HasSuffix(in.Subject, ".broken"):
			return nil, errors.New("always fails")
		case strings.HasSuffix(in.Subject, ".bad"):
			return nil, &event.Permanent{Err: errors.New("bad JSON")}
		}
		return []event.Envelope{{Subject: "troy.results.done." + in.Subject[len("troy.steps."):], Kind: "done", Data: in.Data}}, nil
	}
	stats, stop := run(t, b, Consumer{Name: "test", Stream: StepsStream, Workers: 3, MaxDeliver: 3, BackOff: []time.Duration{10 * time.Millisecond}}, h)
	for _, s := range []string{"ok", "flaky", "broken", "bad"} {
		if err := b.Publish(ctx, env(t, "troy.steps.a."+s, event.KindStep, "", s)); err != nil {
			t.Fatal(err)
		}
	}
	big := event.Envelope{Subject: "troy.steps.a.big", Kind: event.KindStep, Data: []byte(strings.Repeat("x", MaxEventSize+1))}
	if err := b.Publish(ctx, big); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "dead letters", func() bool { return stats.Dead.Load() == 3 && stats.Out.Load() == 2 })
	stop()
	mu.Lock()
	if seen["troy.steps.a.flaky"] != 3 || seen["troy.steps.a.broken"] != 3 || seen["troy.steps.a.bad"] != 1 || seen["troy.steps.a.big"] != 0 {
		t.Fatalf("deliveries %v", seen)
	}
	mu.Unlock()
	dead, err := b.Read(ctx, DeadStream, event.DeadSubject("test"), math.MaxUint64)
	if err != nil || len(dead) != 3 {
		t.Fatalf("dead letters: %d %v", len(dead), err)
	}
	reasons := map[string]string{}
	for _, d := range dead {
		var dl event.DeadLetter
		if err := json.Unmarshal(d.Data, &dl); err != nil {
			t.Fatal(err)
		}
		reasons[dl.Subject] = fmt.Sprintf("%d %s", dl.Deliveries, dl.Error)
	}
	for subj, want := range map[string]string{
		"troy.steps.a.broken": "3 always fails",
		"troy.steps.a.bad":    "1 bad JSON",
		"troy.steps.a.big":    "1 event of 1048577 bytes is over the 1048576-byte limit",
	} {
		if reasons[subj] != want {
			t.Errorf("%s: %q, want %q", subj, reasons[subj], want)
		}
	}
	out, err := b.Read(ctx, ResultsStream, "troy.results.done.>", math.MaxUint64)
	if err != nil || len(out) != 2 {
		t.Fatalf("outputs: %d %v", len(out), err)
	}
}

// A handler that runs for several ack waits keeps its event: the server hears that it is
// still being worked on and does not deliver it again meanwhile, and the events of other
// workers go on.
func TestSlowHandlerKeepsItsEvent(t *testing.T) {
	b := openMemory(t)
	ctx := context.Background()
	const ackWait = 500 * time.Millisecond
	var mu sync.Mutex
	deliveries, finished := map[string]int{}, 0
	h := func(ctx context.Context, in event.Envelope) ([]event.Envelope, error) {
		mu.Lock()
		deliveries[in.Subject]++
		mu.Unlock()
		if strings.HasSuffix(in.Subject, ".slow") {
			// The slowness is what is tested: three ack waits, bounded.
			select {
			case <-time.After(3 * ackWait):
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		}
		mu.Lock()
		finished++
		mu.Unlock()
		return nil, nil
	}
	_, stop := run(t, b, Consumer{Name: "slow", Stream: StepsStream, Workers: 2, AckWait: ackWait, BackOff: []time.Duration{10 * time.Millisecond}}, h)
	for _, s := range []string{"slow", "a", "b", "c"} {
		if err := b.Publish(ctx, env(t, "troy.steps.a."+s, event.KindStep, "", s)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "every event handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return finished >= 4
	})
	stop()
	mu.Lock()
	defer mu.Unlock()
	// Events queued behind the slow one may come again (they are not in hand yet); the
	// one in hand must not.
	if deliveries["troy.steps.a.slow"] != 1 || len(deliveries) != 4 {
		t.Fatalf("deliveries %v: the slow event was taken back while it was handled", deliveries)
	}
}

// A long drain keeps going: thousands of events across many subjects are all handled, in
// order per subject, without the consumer stalling.
func TestLongDrainInOrderPerSubject(t *testing.T) {
	b := openMemory(t)
	ctx := context.Background()
	const subjects, per = 50, 200
	for i := range per {
		for s := range subjects {
			if err := b.PublishAsync(env(t, fmt.Sprintf("troy.steps.a.t%d", s), event.KindStep, "", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	last := map[string]int{}
	var disorder atomic.Int64
	h := func(_ context.Context, in event.Envelope) ([]event.Envelope, error) {
		var n int
		if err := json.Unmarshal(in.Data, &n); err != nil {
			return nil, err
		}
		mu.Lock()
		if prev, ok := last[in.Subject]; ok && n != prev+1 {
			disorder.Add(1)
		}
		last[in.Subject] = n
		mu.Unlock()
		return nil, nil
	}
	start := time.Now()
	stats, stop := run(t, b, Consumer{Name: "drain", Stream: StepsStream, Workers: 4}, h)
	waitFor(t, 60*time.Second, "the drain", func() bool { return stats.In.Load() == subjects*per })
	stop()
	if disorder.Load() != 0 {
		t.Fatalf("%d events out of order", disorder.Load())
	}
	t.Logf("drained %d events in %v", subjects*per, time.Since(start))
}

func TestRetentionLimitsApplyToExistingStreams(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func(o Options) *Bus {
		t.Helper()
		o.DataDir = dir
		b, err := Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	limits := func(b *Bus, name string) (time.Duration, int64, uint64) {
		t.Helper()
		s, err := b.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Config.MaxAge, info.Config.MaxBytes, info.State.Msgs
	}

	b := open(Options{})
	for i := range 20 {
		if err := b.Publish(ctx, env(t, "troy.steps.a.t", event.KindStep, fmt.Sprint(i), strings.Repeat("x", 1000))); err != nil {
			t.Fatal(err)
		}
	}
	if age, size, n := limits(b, StepsStream); age != 0 || size != -1 || n != 20 {
		t.Fatalf("by default everything is kept: age %s, bytes %d, %d events", age, size, n)
	}
	b.Close()

	// A byte limit drops the oldest events of the stream that was declared without one.
	b = open(Options{RetainBytes: 8 << 10})
	for _, name := range []string{StepsStream, ResultsStream, DeadStream} {
		if _, size, _ := limits(b, name); size != 8<<10 {
			t.Fatalf("%s: bytes %d", name, size)
		}
	}
	if _, _, n := limits(b, StepsStream); n == 0 || n >= 20 {
		t.Fatalf("%d events kept under an 8 KiB limit", n)
	}
	b.Close()

	// An age shorter than the de-duplication window shortens the window, and events go.
	b = open(Options{Retain: 500 * time.Millisecond})
	if age, _, _ := limits(b, ResultsStream); age != 500*time.Millisecond {
		t.Fatalf("results age %s", age)
	}
	if st, err := b.cache.Status(ctx); err != nil || st.TTL() != 500*time.Millisecond {
		t.Fatalf("the explanation cache keeps replies as long as the streams keep events: %v %v", st, err)
	}
	waitFor(t, 10*time.Second, "events older than the age to go", func() bool {
		_, _, n := limits(b, StepsStream)
		return n == 0
	})
	b.Close()

	// An instance started without limits leaves those the streams have.
	b = open(Options{})
	if age, size, _ := limits(b, StepsStream); age != 500*time.Millisecond || size != 8<<10 {
		t.Fatalf("limits kept: age %s, bytes %d", age, size)
	}
	if st, err := b.cache.Status(ctx); err != nil || st.TTL() != 500*time.Millisecond {
		t.Fatalf("cache TTL kept: %v %v", st, err)
	}
	b.Close()

	b = open(Options{Retain: Unlimited, RetainBytes: Unlimited})
	defer b.Close()
	if age, size, _ := limits(b, StepsStream); age != 0 || size != -1 {
		t.Fatalf("limits lifted: age %s, bytes %d", age, size)
	}
	if st, err := b.cache.Status(ctx); err != nil || st.TTL() != 0 {
		t.Fatalf("cache TTL lifted: %v %v", st, err)
	}
}

// Answers and errors come back to each caller, from workers, while many requests are in
// flight; a request published without a reply subject is still handled.
func TestServiceAnswersAndErrors(t *testing.T) {
	b := openMemory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var handled atomic.Int64
	stop, err := b.AddService("test", "1.0.0", "echo or refuse", []Endpoint{{Name: "echo", Subject: "test.echo",
		Handle: func(_ context.Context, data []byte) ([]byte, error) {
			handled.Add(1)
			switch string(data) {
			case "refuse":
				return nil, &RequestError{Code: "400", Message: "refused"}
			case "fail":
				return nil, errors.New("broken")
			}
			return data, nil
		}}}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stop() }()
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Go(func() {
			in := []string{"refuse", "fail", fmt.Sprint("hello ", i)}[i%3]
			out, err := b.Request(ctx, "test.echo", []byte(in))
			var re *RequestError
			switch {
			case in == "refuse" && !(errors.As(err, &re) && re.Code == "400" && re.Message == "refused"):
				errs <- fmt.Errorf("refuse: %v", err)
			case in == "fail" && !(errors.As(err, &re) && re.Code == "500" && re.Message == "broken"):
				errs <- fmt.Errorf("fail: %v", err)
			case i%3 == 2 && (err != nil || string(out) != in):
				errs <- fmt.Errorf("%s: %q %v", in, out, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := b.nc.Publish("test.echo", []byte("no reply")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the request without a reply subject to be handled", func() bool { return handled.Load() == 301 })
}

// A service that stops answers every request it received, even those still waiting for a
// worker, and takes no new ones: none is refused with "shutting down". Requests sent while
// no instance is there are sent again until one is.
func TestServiceStopAnswersEveryRequestReceived(t *testing.T) {
	b := openMemory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	release := make(chan struct{})
	var entered atomic.Int64
	echo := []Endpoint{{Name: "echo", Subject: "test.echo", Handle: func(_ context.Context, data []byte) ([]byte, error) {
		entered.Add(1)
		<-release
		return data, nil
	}}}
	stop, err := b.AddService("test", "1.0.0", "echo, slowly", echo, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// More requests than workers and queue together: some wait in the subscription. Once
	// the flush returns, the server has handed every one to the service.
	const n = 4 * serviceWorkers
	inbox := nats.NewInbox()
	replies, err := b.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := b.nc.PublishRequest("test.echo", fmt.Sprint(inbox, ".", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every worker to hold a request", func() bool { return entered.Load() == serviceWorkers })
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	close(release)
	for range n {
		msg, err := replies.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("replies: %v", err)
		}
		if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" || msg.Subject != inbox+"."+string(msg.Data) {
			t.Errorf("a request received before the stop: %s: %s %s %q", msg.Subject, code, msg.Header.Get("Nats-Service-Error"), msg.Data)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}

	// No instance now: a request waits for the next one.
	answered := make(chan error, 1)
	go func() {
		out, err := b.Request(ctx, "test.echo", []byte("later"))
		if err == nil && string(out) != "later" {
			err = fmt.Errorf("reply %q", out)
		}
		answered <- err
	}()
	stop2, err := b.AddService("test", "1.0.0", "echo", echo, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stop2() }()
	if err := <-answered; err != nil {
		t.Fatalf("a request sent before the next instance started: %v", err)
	}
}

// Each in-memory bus has a directory of its own, gone once it is closed.
func TestMemoryBusesKeepNoSharedDirectory(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	a, b := openMemory(t), openMemory(t)
	if a.tmpDir == "" || a.tmpDir == b.tmpDir {
		t.Fatalf("directories %q and %q", a.tmpDir, b.tmpDir)
	}
	a.Close()
	if _, err := os.Stat(a.tmpDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after close: %v", a.tmpDir, err)
	}
}

// A handler whose output can never be stored (over the payload limit) has its event
// dead-lettered at once, naming the event's trace, instead of retrying the publish forever.
func TestUnstorableOutputIsDeadLetteredAtOnce(t *testing.T) {
	b := openMemory(t)
	ctx := context.Background()
	var calls atomic.Int64
	h := func(_ context.Context, in event.Envelope) ([]event.Envelope, error) {
		calls.Add(1)
		return []event.Envelope{{Subject: "troy.results.done.a.t", Kind: "done", Data: []byte(strings.Repeat("x", MaxEventSize+headerRoom+1))}}, nil
	}
	stats, stop := run(t, b, Consumer{Name: "test", Stream: StepsStream, MaxDeliver: 3, BackOff: []time.Duration{10 * time.Millisecond}}, h)
	defer stop()
	ref := event.TraceRef{TraceID: "t", AgentName: "a", Run: "r1"}
	if err := b.Publish(ctx, env(t, "troy.steps.a.t", event.KindStep, "", event.Step{TraceRef: ref})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a dead letter", func() bool { return stats.Dead.Load() == 1 })
	if calls.Load() != 1 {
		t.Fatalf("handled %d times, want once: a permanent failure is not retried", calls.Load())
	}
	dead, err := b.Read(ctx, DeadStream, event.DeadSubject("test"), math.MaxUint64)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters: %d %v", len(dead), err)
	}
	var dl event.DeadLetter
	if err := json.Unmarshal(dead[0].Data, &dl); err != nil {
		t.Fatal(err)
	}
	if dl.Trace == nil || *dl.Trace != ref || !strings.Contains(dl.Error, "maximum payload exceeded") {
		t.Fatalf("dead letter %+v: want the trace %+v and the reason", dl, ref)
	}
}

// Publishing an event over the payload limit fails at once, and says so.
func TestPublishAllRefusesAnOversizeEventAtOnce(t *testing.T) {
	b := openMemory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events := []event.Envelope{
		{Subject: "troy.steps.a.t", Kind: event.KindStep, Data: []byte(`{}`)},
		{Subject: "troy.steps.a.t", Kind: event.KindStep, Data: []byte(strings.Repeat("x", MaxEventSize+headerRoom+1))},
	}
	err := b.PublishAll(ctx, events)
	var perm *event.Permanent
	if !errors.As(err, &perm) || ctx.Err() != nil {
		t.Fatalf("got %v (context: %v), want a permanent error before the deadline", err, ctx.Err())
	}
	if b.MaxEventSize() != MaxEventSize {
		t.Fatalf("embedded server: event limit %d, want %d", b.MaxEventSize(), MaxEventSize)
	}
}

// DeleteConsumer removes a durable consumer once, and says whether it was there.
func TestDeleteConsumer(t *testing.T) {
	b, err := Open(context.Background(), Options{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.js.CreateConsumer(ctx, ResultsStream, jetstream.ConsumerConfig{Durable: "old", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		got, err := b.DeleteConsumer(ctx, ResultsStream, "old")
		if err != nil || got != want {
			t.Fatalf("call %d: got %v, %v; want %v", i+1, got, err, want)
		}
	}
	if _, err := b.Lag(ctx, ResultsStream, "old"); !IsNotFound(err) {
		t.Fatalf("the consumer is still there: %v", err)
	}
}
