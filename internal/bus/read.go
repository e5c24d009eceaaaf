package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

// askGet sends a message get request to a JetStream API subject, waiting up to
// leaderTimeout: a request sent while the stream has no leader is never answered.
func (b *Bus) askGet(ctx context.Context, api string, req msgGetRequest) (*nats.Msg, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, leaderTimeout)
	defer cancel()
	return b.nc.RequestWithContext(ctx, b.apiSubject(api), data)
}

// leaderGet asks the stream's leader for one message.
func (b *Bus) leaderGet(ctx context.Context, stream string, req msgGetRequest) (event.Envelope, error) {
	msg, err := b.askGet(ctx, "STREAM.MSG.GET."+stream, req)
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
// is used only where the stream has one, on the bus's own embedded server.
func (b *Bus) directGet(ctx context.Context, stream string, req msgGetRequest) (event.Envelope, error) {
	msg, err := b.askGet(ctx, "DIRECT.GET."+stream, req)
	if err != nil {
		return event.Envelope{}, fmt.Errorf("ask stream %s: %w", stream, err)
	}
	switch status := msg.Header.Get("Status"); status {
	case "":
	case "404":
		return event.Envelope{}, errNoMessage
	default:
		return event.Envelope{}, fmt.Errorf("ask stream %s: %s %s", stream, status, msg.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return event.Envelope{}, fmt.Errorf("ask stream %s: the sequence of the answer: %w", stream, err)
	}
	e := event.Envelope{Subject: msg.Header.Get(jetstream.SubjectHeader), Kind: event.Kind(msg.Header.Get(event.KindHeader)), Data: msg.Data, Seq: seq}
	if e.Time, err = time.Parse(time.RFC3339Nano, msg.Header.Get(jetstream.TimeStampHeaer)); err != nil {
		return event.Envelope{}, fmt.Errorf("ask stream %s: the time of the answer: %w", stream, err)
	}
	return e, nil
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
