package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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

// RequestError is an error a handler returns to the caller with a code.
type RequestError struct {
	Code    string // such as "400", "503"
	Message string
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

// serviceWorkers bounds how many requests a service handles at once. Handlers mostly wait
// for the stream to acknowledge a write, so this is well above the core count; a pool of
// long-lived goroutines keeps their grown stacks instead of growing a new one per request.
const serviceWorkers = 64

type request struct {
	reply string
	data  []byte
	h     RequestHandler
}

// AddService serves endpoints as a NATS micro service, so that $SRV.PING, INFO and STATS
// work, in a queue group: many instances share the requests. Requests are handled
// concurrently by a fixed pool of workers; stop stops taking requests and waits for those
// in hand to be answered.
func (b *Bus) AddService(name, version, description string, eps []Endpoint, timeout time.Duration) (stop func() error, err error) {
	svc, err := micro.AddService(b.nc, micro.Config{Name: name, Version: version, Description: description})
	if err != nil {
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
		err := svc.Stop() // drains: requests already received may still arrive below
		mu.Lock()
		closed = true
		close(queue)
		mu.Unlock()
		wg.Wait()
		return err
	}
	for _, ep := range eps {
		h := ep.Handle
		err := svc.AddEndpoint(ep.Name, micro.HandlerFunc(func(req micro.Request) {
			mu.RLock()
			defer mu.RUnlock()
			if closed {
				_ = req.Error("503", "shutting down", nil)
				return
			}
			queue <- request{reply: req.Reply(), data: req.Data(), h: h}
		}), micro.WithEndpointSubject(ep.Subject))
		if err != nil {
			_ = shutdown()
			return nil, err
		}
	}
	// Once this returns, the server knows the subscriptions: a request sent now finds us.
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		_ = shutdown()
		return nil, fmt.Errorf("service %s: %w", name, err)
	}
	return shutdown, nil
}

// answer handles a request on a worker and publishes the reply itself, in the micro
// service's error format: micro.Request may not be answered once its handler has
// returned (the service reads what the answer recorded, for its statistics, unguarded).
func (b *Bus) answer(r request, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := r.h(ctx, r.data)
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

// Request sends a request and waits for the reply; an error reply becomes a RequestError.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	msg, err := b.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, err
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, &RequestError{Code: code, Message: msg.Header.Get(micro.ErrorHeader)}
	}
	return msg.Data, nil
}
