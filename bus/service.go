package bus

import (
	"context"
	"errors"
	"time"

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

// AddService serves endpoints as a NATS micro service, so that $SRV.PING, INFO and STATS
// work, in a queue group: many instances share the requests. Each request is handled in
// its own goroutine.
func (b *Bus) AddService(name, version, description string, eps []Endpoint, timeout time.Duration) (stop func() error, err error) {
	svc, err := micro.AddService(b.nc, micro.Config{Name: name, Version: version, Description: description})
	if err != nil {
		return nil, err
	}
	for _, ep := range eps {
		h := ep.Handle
		err := svc.AddEndpoint(ep.Name, micro.HandlerFunc(func(req micro.Request) {
			data := append([]byte(nil), req.Data()...)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				out, err := h(ctx, data)
				if err != nil {
					var re *RequestError
					if !errors.As(err, &re) {
						re = &RequestError{Code: "500", Message: err.Error()}
					}
					_ = req.Error(re.Code, re.Message, nil)
					return
				}
				_ = req.Respond(out)
			}()
		}), micro.WithEndpointSubject(ep.Subject))
		if err != nil {
			_ = svc.Stop()
			return nil, err
		}
	}
	return svc.Stop, nil
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
