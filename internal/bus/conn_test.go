package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/event"
)

// A connection the server drops heals by itself: consumers and services carry on.
func TestDroppedConnectionHeals(t *testing.T) {
	b := openMemory(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	handled := make(chan string, 16)
	_, stop := run(t, b, Consumer{Name: "test", Stream: StepsStream}, func(_ context.Context, in event.Envelope) ([]event.Envelope, error) {
		handled <- in.Subject
		return nil, nil
	})
	defer stop()
	stopSvc, err := b.AddService("echo", "1.0.0", "echoes", []Endpoint{{Name: "echo", Subject: "test.echo",
		Handle: func(_ context.Context, data []byte) ([]byte, error) { return data, nil }}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stopSvc()
	// The consumer is created by Consume as it starts: see it handle an event first, so that
	// the drop below meets a running consumer rather than one being created (which fails,
	// for its supervisor to start again).
	if err := b.Publish(ctx, event.Envelope{Subject: "troy.steps.a.before", Kind: event.KindStep, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-ctx.Done():
		t.Fatal("the consumer did not start")
	}

	id, err := b.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.DisconnectClientByID(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the connection to drop and come back", func() bool {
		newID, err := b.nc.GetClientID()
		return err == nil && newID != id && b.Connected()
	})
	if err := b.Publish(ctx, event.Envelope{Subject: "troy.steps.a.after", Kind: event.KindStep, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-handled:
		if s != "troy.steps.a.after" {
			t.Fatalf("handled %s", s)
		}
	case <-ctx.Done():
		t.Fatal("the consumer did not carry on after the connection came back")
	}
	out, err := b.Request(ctx, "test.echo", []byte("ping"))
	if err != nil || string(out) != "ping" {
		t.Fatalf("the service after the connection came back: %q %v", out, err)
	}
	select {
	case <-b.Lost():
		t.Fatal("a connection that came back was reported lost")
	default:
	}
}

// A connection NATS closes for good (here: a protocol line over its limit, sent around the
// bus's own check) is reported as lost, with the reason; Close is not.
func TestConnectionClosedForGoodIsReported(t *testing.T) {
	b := openMemory(t)
	if err := b.nc.Publish("troy.steps.a."+strings.Repeat("z", 5000), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("the closed connection was not reported")
	}
	if err := b.LostError(); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "maximum control line") {
		t.Fatalf("reason: %v", err)
	}

	other := openMemory(t)
	other.Close()
	select {
	case <-other.Lost():
		t.Fatal("Close was reported as a lost connection")
	default:
	}
}

// A handler that panics costs its event, not the process: the event is dead-lettered with
// the panic, and a service answers the request with an error.
func TestPanickingHandlersDoNotStopTheProcess(t *testing.T) {
	b := openMemory(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stats, stop := run(t, b, Consumer{Name: "test", Stream: StepsStream}, func(_ context.Context, in event.Envelope) ([]event.Envelope, error) {
		panic("boom")
	})
	defer stop()
	stopSvc, err := b.AddService("boom", "1.0.0", "panics", []Endpoint{{Name: "boom", Subject: "test.boom",
		Handle: func(context.Context, []byte) ([]byte, error) { panic("boom") }}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stopSvc()
	if err := b.Publish(ctx, event.Envelope{Subject: "troy.steps.a.b", Kind: event.KindStep, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the panicking event dead-lettered", func() bool { return stats.Dead.Load() == 1 })
	_, err = b.Request(ctx, "test.boom", []byte("x"))
	var re *RequestError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "panicked: boom") {
		t.Fatalf("a panicking service: %v", err)
	}
}
