package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/troy-audit/troy/sdk/wire"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// RequestHandler answers one request.
type RequestHandler func(ctx context.Context, data []byte) ([]byte, error)

// Endpoint is one subject of a service.
type Endpoint struct {
	Name    string
	Subject string
	Handle  RequestHandler
}

type subjectKey struct{}

// RequestSubject is the subject a request handled by a service came on ("" outside a
// service's handler): a service listening with a wildcard reads what it stood for.
func RequestSubject(ctx context.Context) string {
	s, _ := ctx.Value(subjectKey{}).(string)
	return s
}

// RequestError is an error a handler returns to the caller with a code.
type RequestError = wire.RequestError

// serviceWorkers bounds how many requests a service handles at once. Handlers mostly wait
// for the stream to acknowledge a write, so this is well above the core count; a pool of
// long-lived goroutines keeps their grown stacks instead of growing a new one per request.
const serviceWorkers = 64

type request struct {
	subject string
	reply   string
	data    []byte
	h       RequestHandler
}

// ShuttingDown is the message of the 503 an instance answers while it stops; the request
// was not handled, so a client may send it again (Request does).
const ShuttingDown = wire.ShuttingDown

// drainTimeout bounds the wait for a stopping service's requests in hand.
const drainTimeout = 30 * time.Second

// AddService serves endpoints as a NATS micro service, so that $SRV.PING, INFO and STATS
// work, in a queue group: many instances share the requests. Requests are handled
// concurrently by a fixed pool of workers. stop first leaves the queue group, so that new
// requests go to the other instances, then answers every request already received, and
// returns once all are answered.
//
// The service has a connection of its own, so that leaving is draining that connection:
// NATS removes the subscriptions, hands over every message sent before, and only then
// closes it. Replies go out on the bus's connection, which stays open.
func (b *Bus) AddService(name, version, description string, eps []Endpoint, timeout time.Duration) (stop func() error, err error) {
	drained := make(chan struct{})
	nc, err := b.connect(nats.Name(name), nats.DrainTimeout(drainTimeout), nats.ClosedHandler(func(*nats.Conn) { close(drained) }))
	if err != nil {
		return nil, fmt.Errorf("service %s: connect: %w", name, err)
	}
	svc, err := micro.AddService(nc, micro.Config{Name: name, Version: version, Description: description})
	if err != nil {
		nc.Close()
		return nil, err
	}
	queue := make(chan request, serviceWorkers)
	var (
		wg     sync.WaitGroup
		mu     sync.RWMutex // closed and the queue's closing
		closed bool
	)
	for range serviceWorkers {
		wg.Go(func() {
			for r := range queue {
				b.answer(r, timeout)
			}
		})
	}
	shutdown := func() error {
		err := nc.Drain()
		if err == nil {
			select {
			case <-drained:
			case <-time.After(drainTimeout + time.Second): // the client library gives up at drainTimeout
			}
		}
		nc.Close()
		mu.Lock()
		closed = true
		close(queue)
		mu.Unlock()
		wg.Wait()
		if serr := svc.Stop(); serr != nil && !errors.Is(serr, nats.ErrConnectionClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}
	for _, ep := range eps {
		h := ep.Handle
		err := svc.AddEndpoint(ep.Name, micro.HandlerFunc(func(req micro.Request) {
			mu.RLock()
			defer mu.RUnlock()
			if closed {
				// Only after a drain that timed out: the request was not handled.
				_ = req.Error("503", ShuttingDown, nil)
				return
			}
			queue <- request{subject: req.Subject(), reply: req.Reply(), data: req.Data(), h: h}
		}), micro.WithEndpointSubject(ep.Subject))
		if err != nil {
			_ = shutdown()
			return nil, err
		}
	}
	// Once this returns, the server knows the subscriptions: a request sent now finds us.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		_ = shutdown()
		return nil, fmt.Errorf("service %s: %w", name, err)
	}
	return shutdown, nil
}

// answer handles a request on a worker and publishes the reply itself, in the micro
// service's error format: micro.Request may not be answered once its handler has
// returned (the service reads what the answer recorded, for its statistics, unguarded).
func (b *Bus) answer(r request, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), subjectKey{}, r.subject), timeout)
	defer cancel()
	out, err := func() (out []byte, err error) {
		defer b.recovered("a service request", &err)
		return r.h(ctx, r.data)
	}()
	if r.reply == "" {
		return // published without a reply subject: nobody waits for an answer
	}
	msg := nats.NewMsg(r.reply)
	if err != nil {
		var re *RequestError
		if !errors.As(err, &re) {
			re = &RequestError{Code: "500", Message: err.Error()}
		}
		msg.Header.Set(micro.ErrorCodeHeader, re.Code)
		msg.Header.Set(micro.ErrorHeader, re.Message)
	} else {
		msg.Data = out
	}
	if err := b.nc.PublishMsg(msg); err != nil {
		b.log.Warn("could not answer a request", "err", err)
	}
}

// Request sends a request to a service and waits for the reply, as wire.Request does.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	return wire.Request(ctx, b.nc, subject, data)
}
