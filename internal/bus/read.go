package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/troy-audit/troy/event"
)

// Reading a trace back in a cluster. A direct get is answered by any replica of the
// stream (the one on the server the client is connected to, when there is one), and a
// replica that lags behind the leader answers with what it has applied so far: a read
// right after a write can miss the write. nats-server 2.12 had a "min_last_seq" for direct
// gets that made a lagging replica pass the request to the leader, but removed it before
// release (nats-server#7285) and 2.15 has none. So the leader is asked instead, through
// the message get API, which only the leader answers: first for the subject's last
// sequence, which bounds what the direct gets must return, and then, when a replica
// answered short, for each missing event.

// msgGetRequest is the message get API's request (JSApiMsgGetRequest).
type msgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

// msgGetResponse is the message get API's answer (JSApiMsgGetResponse).
type msgGetResponse struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
	Message *struct {
		Subject string    `json:"subject"`
		Seq     uint64    `json:"seq"`
		Header  []byte    `json:"hdrs,omitempty"`
		Data    []byte    `json:"data,omitempty"`
		Time    time.Time `json:"time"`
	} `json:"message,omitempty"`
}

// leaderTimeout bounds one request to a stream's leader.
const leaderTimeout = 5 * time.Second

// errNoMessage is the leader's "no message found".
var errNoMessage = errors.New("no message found")

// leaderGet asks the stream's leader for one message.
func (b *Bus) leaderGet(ctx context.Context, stream string, req msgGetRequest) (event.Envelope, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return event.Envelope{}, err
	}
	// A request sent while the stream has no leader is never answered.
	ctx, cancel := context.WithTimeout(ctx, leaderTimeout)
	defer cancel()
	msg, err := b.nc.RequestWithContext(ctx, b.apiSubject("STREAM.MSG.GET."+stream), data)
	if err != nil {
		return event.Envelope{}, fmt.Errorf("ask the leader of %s: %w", stream, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return event.Envelope{}, fmt.Errorf("ask the leader of %s: %w", stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == 10037: // JSNoMessageFoundErr
		return event.Envelope{}, errNoMessage
	case resp.Error != nil:
		return event.Envelope{}, fmt.Errorf("ask the leader of %s: %s (%d)", stream, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return event.Envelope{}, fmt.Errorf("ask the leader of %s: an answer without a message", stream)
	}
	m := resp.Message
	e := event.Envelope{Subject: m.Subject, Data: m.Data, Seq: m.Seq, Time: m.Time}
	if len(m.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Header)
		if err != nil {
			return event.Envelope{}, fmt.Errorf("ask the leader of %s: event %d: %w", stream, m.Seq, err)
		}
		e.Kind = event.Kind(h.Get(event.KindHeader))
	}
	return e, nil
}

// directGet asks the stream itself for one message with a direct get, which the server
// answers inline with the stored message (no JSON nor base64 around it, no hop through
// its API queue): a third of the leader's cost. Any replica answers a direct get, so it
// is used only where the stream has one, on the bus's own embedded server. The client's
// stream handle makes the request, since the stream allows direct gets.
func (b *Bus) directGet(ctx context.Context, stream string, req msgGetRequest) (event.Envelope, error) {
	ctx, cancel := context.WithTimeout(ctx, leaderTimeout)
	defer cancel()
	st, err := b.stream(ctx, stream)
	if err != nil {
		return event.Envelope{}, fmt.Errorf("ask stream %s: %w", stream, err)
	}
	m, err := st.GetMsg(ctx, req.Seq, jetstream.WithGetMsgSubject(req.NextFor))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return event.Envelope{}, errNoMessage
	}
	if err != nil {
		return event.Envelope{}, fmt.Errorf("ask stream %s: %w", stream, err)
	}
	return rawEnvelope(m), nil
}

// rawEnvelope is the event a stored message read back holds.
func rawEnvelope(m *jetstream.RawStreamMsg) event.Envelope {
	return event.Envelope{Subject: m.Subject, Kind: event.Kind(m.Header.Get(event.KindHeader)), Data: m.Data, Seq: m.Sequence, Time: m.Time}
}

// leaderLastSeq is the stream sequence of the last event on a subject, as the stream's
// leader knows it, or 0 when the subject has none.
func (b *Bus) leaderLastSeq(ctx context.Context, stream, subject string) (uint64, error) {
	e, err := b.leaderGet(ctx, stream, msgGetRequest{LastFor: subject})
	if errors.Is(err, errNoMessage) {
		return 0, nil
	}
	return e.Seq, err
}

// apiSubject is a JetStream API subject under the connection's prefix or domain.
func (b *Bus) apiSubject(s string) string {
	o := b.js.Options()
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "." + s
	case o.Domain != "":
		return "$JS." + o.Domain + ".API." + s
	}
	return "$JS.API." + s
}
