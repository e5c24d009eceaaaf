package bus

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"
)

// PublishEach: each event is stored or fails on its own, with the sequence it is stored
// at; a repeated id is stored once, and a later use of the same reply subject is not
// confused by an earlier one.
func TestPublishEach(t *testing.T) {
	b := openMemory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const subject = "troy.steps.bot.each"
	envs := []event.Envelope{
		env(t, subject, event.KindStep, "a", "first"),
		env(t, "troy.steps.bot."+strings.Repeat("x", 4000), event.KindStep, "", "subject too long"),
		env(t, subject, event.KindStep, "b", "second"),
		env(t, subject, event.KindStep, "a", "the first again"),
		env(t, "nowhere.to.be.stored", event.KindStep, "", "no stream"),
	}
	for round := range 2 {
		seqs, errs := b.PublishEach(ctx, envs)
		for i, want := range []bool{true, false, true, true, false} {
			if (errs[i] == nil) != want {
				t.Errorf("round %d, event %d: error %v; want stored %v", round, i, errs[i], want)
			}
		}
		if !errors.Is(errs[4], jetstream.ErrNoStreamResponse) {
			t.Errorf("round %d: a subject no stream takes: %v; want %v", round, errs[4], jetstream.ErrNoStreamResponse)
		}
		if seqs[0] == 0 || seqs[3] != seqs[0] || seqs[2] <= seqs[0] {
			t.Errorf("round %d: sequences %v; want the repeat at the first's, the second after it", round, seqs)
		}
	}
	stored, err := b.ReadSteps(ctx, subject, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 || string(stored[0].Data) != `"first"` || string(stored[1].Data) != `"second"` {
		t.Errorf("stored %d events: %v; want first and second, once each", len(stored), stored)
	}
}
