package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	json "github.com/goccy/go-json" // an acknowledgement a check waits for
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"
	"github.com/troy-audit/troy/sdk/wire"
)

// maxAcks bounds the events PublishEach has awaiting acknowledgement on one reply subject;
// its channel holds that many, so that none is dropped.
const maxAcks = 256

// acker is a reply subject of the bus's connection whose messages the connection's reader
// puts straight into a channel: a stream's acknowledgement wakes the goroutine waiting for
// it directly, not through the request multiplexer's goroutine and the connection's lock
// (which the connection's flusher holds while it writes). One goroutine uses it at a time.
type acker struct {
	prefix string
	sub    *nats.Subscription
	ch     chan *nats.Msg
	next   uint64 // the token of the next event published; replies to earlier ones are stale
}

func (b *Bus) takeAcker() (*acker, error) {
	b.ackMu.Lock()
	if n := len(b.ackers); n > 0 {
		a := b.ackers[n-1]
		b.ackers = b.ackers[:n-1]
		b.ackMu.Unlock()
		return a, nil
	}
	b.ackMu.Unlock()
	a := &acker{prefix: b.nc.NewInbox(), ch: make(chan *nats.Msg, maxAcks)}
	var err error
	if a.sub, err = b.nc.ChanSubscribe(a.prefix+".*", a.ch); err != nil {
		return nil, fmt.Errorf("subscribe for acknowledgements: %w", err)
	}
	return a, nil
}

func (b *Bus) putAcker(a *acker) {
	b.ackMu.Lock()
	b.ackers = append(b.ackers, a)
	b.ackMu.Unlock()
}

// Events that no stream answered (a leader being elected) are published again, as the
// JetStream client does: this many times, this far apart.
const (
	pubRetries   = 2
	pubRetryWait = 250 * time.Millisecond
)

// PublishEach stores events together: all are published at once, so that they go out in
// one write, and every acknowledgement is awaited. seqs[i] is the stream sequence of
// envs[i] when errs[i] is nil; one event that fails leaves the others stored.
func (b *Bus) PublishEach(ctx context.Context, envs []event.Envelope) (seqs []uint64, errs []error) {
	seqs, errs = make([]uint64, len(envs)), make([]error, len(envs))
	b.publishChunks(ctx, envs, seqs, errs)
	for range pubRetries {
		var again []int
		for i, err := range errs {
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			break
		}
		if sleep(ctx, pubRetryWait); ctx.Err() != nil {
			break
		}
		retry := make([]event.Envelope, len(again))
		for j, i := range again {
			retry[j] = envs[i]
		}
		rseqs, rerrs := make([]uint64, len(again)), make([]error, len(again))
		b.publishChunks(ctx, retry, rseqs, rerrs)
		for j, i := range again {
			seqs[i], errs[i] = rseqs[j], rerrs[j]
		}
	}
	return seqs, errs
}

// publishChunks publishes events maxAcks at a time.
func (b *Bus) publishChunks(ctx context.Context, envs []event.Envelope, seqs []uint64, errs []error) {
	for from := 0; from < len(envs); from += maxAcks {
		to := min(from+maxAcks, len(envs))
		b.publishAcked(ctx, envs[from:to], seqs[from:to], errs[from:to])
	}
}

// publishAcked is PublishEach for at most maxAcks events.
func (b *Bus) publishAcked(ctx context.Context, envs []event.Envelope, seqs []uint64, errs []error) {
	fail := func(i int, err error) {
		errs[i] = fmt.Errorf("publish %s to %s: %w", envs[i].Kind, envs[i].Subject, err)
	}
	a, err := b.takeAcker()
	if err != nil {
		for i := range envs {
			fail(i, err)
		}
		return
	}
	base := a.next
	a.next += uint64(len(envs))
	waiting := make([]bool, len(envs))
	left := 0
	for i, e := range envs {
		m, err := wire.Message(e)
		if err == nil {
			if e.MsgID != "" {
				m.Header.Set(jetstream.MsgIDHeader, e.MsgID)
			}
			m.Reply = a.prefix + "." + strconv.FormatUint(base+uint64(i), 10)
			err = b.nc.PublishMsg(m)
		}
		if err != nil {
			fail(i, err)
			continue
		}
		waiting[i] = true
		left++
	}
	for left > 0 {
		select {
		case m := <-a.ch:
			tok, err := strconv.ParseUint(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
			if err != nil || tok < base || tok-base >= uint64(len(envs)) || !waiting[tok-base] {
				continue // a reply to an event of an earlier use, or a second one
			}
			i := int(tok - base)
			waiting[i] = false
			left--
			if seqs[i], err = pubAck(m); err != nil {
				fail(i, err)
			}
		case <-ctx.Done():
			for i := range envs {
				if waiting[i] {
					fail(i, ctx.Err())
				}
			}
			// Replies may still come: the subject is not used again.
			_ = a.sub.Unsubscribe()
			return
		}
	}
	b.putAcker(a)
}

// pubAck reads a stream's acknowledgement of a publish: the stored event's sequence, or
// why it was not stored.
func pubAck(m *nats.Msg) (uint64, error) {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return 0, jetstream.ErrNoStreamResponse // no stream takes the subject
	}
	var r struct {
		Stream string              `json:"stream"`
		Seq    uint64              `json:"seq"`
		Error  *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return 0, fmt.Errorf("%w: %v", jetstream.ErrInvalidJSAck, err)
	}
	if r.Error != nil {
		return 0, r.Error
	}
	if r.Stream == "" || r.Seq == 0 {
		return 0, jetstream.ErrInvalidJSAck
	}
	return r.Seq, nil
}
