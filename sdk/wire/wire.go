// Package wire is how troy's events and requests travel over NATS from a client: the
// connection options, publishing events with their de-duplication ids and kinds and
// retrying what a retry can fix, and requests to troy's services, sent again when no
// instance took them. Agents (package agent) and troy's own stages (package bus) use it,
// so both speak the protocol the same way.
package wire

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/troy-audit/troy/event"
)

// Auth is how a client proves who it is to NATS, and the TLS it uses.
type Auth struct {
	// User and password, a token, a creds file or an nkey seed file: the first set wins,
	// in the order creds file, nkey file, token, user.
	User, Password, Token, CredsFile, NKeyFile string
	// A CA file to trust, and a client certificate and key.
	CAFile, CertFile, KeyFile string
}

// Options are the nats.go options of a client connection named name: it reconnects for
// ever, a quarter of a second apart, with a's credentials and TLS.
func Options(name string, a Auth) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
		// A file that cannot be read or parsed here fails at connect, with nats.go's error.
		if prefix, err := InboxPrefix(a.CredsFile); err == nil && prefix != "" {
			opts = append(opts, nats.CustomInboxPrefix(prefix))
		}
	case a.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey %s: %w", a.NKeyFile, err)
		}
		opts = append(opts, opt)
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.CAFile))
	}
	if a.CertFile != "" || a.KeyFile != "" {
		opts = append(opts, nats.ClientCert(a.CertFile, a.KeyFile))
	}
	if a.CAFile != "" || a.CertFile != "" {
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	return opts, nil
}

// InboxPrefix is the inbox prefix a credentials file's user must use: when the user may
// subscribe only under one _INBOX.X.> (as an agent's credential from troyctl auth may),
// replies must come there, so requests are sent with the prefix _INBOX.X. It is "" for a
// user that may subscribe elsewhere.
func InboxPrefix(credsFile string) (string, error) {
	raw, err := os.ReadFile(credsFile)
	if err != nil {
		return "", fmt.Errorf("credentials: %w", err)
	}
	_, rest, ok := strings.Cut(string(raw), "-----BEGIN NATS USER JWT-----")
	tok, _, _ := strings.Cut(rest, "------END NATS USER JWT------")
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if !ok || len(parts) != 3 {
		return "", fmt.Errorf("credentials %s: expected a NATS user JWT between its BEGIN and END lines", credsFile)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", fmt.Errorf("credentials %s: the JWT: %w", credsFile, err)
	}
	var claims struct {
		Nats struct {
			Sub struct {
				Allow []string `json:"allow"`
			} `json:"sub"`
		} `json:"nats"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("credentials %s: the JWT: %w", credsFile, err)
	}
	allow := claims.Nats.Sub.Allow
	if len(allow) != 1 || !strings.HasPrefix(allow[0], "_INBOX.") || !strings.HasSuffix(allow[0], ".>") || allow[0] == "_INBOX.>" {
		return "", nil
	}
	return strings.TrimSuffix(allow[0], ".>"), nil
}

// MaxSubject bounds a subject: a NATS server closes for good a connection that sends a
// protocol line over 4 KiB (nats.go does not reconnect after that), so a subject that
// long is refused, as a permanent error, before it is sent.
const MaxSubject = 3584

// ErrSubjectTooLong says an event's subject is too long to send.
var ErrSubjectTooLong = errors.New("subject too long")

// Message is an event as a NATS message: its body, with its kind in a header.
func Message(e event.Envelope) (*nats.Msg, error) {
	if len(e.Subject) > MaxSubject {
		return nil, &event.Permanent{Err: fmt.Errorf("publish %s: %w: %d bytes, over %d", e.Kind, ErrSubjectTooLong, len(e.Subject), MaxSubject)}
	}
	m := nats.NewMsg(e.Subject)
	m.Data = e.Data
	m.Header.Set(event.KindHeader, string(e.Kind))
	return m, nil
}

// PublishOpts are the options of an event's publish: its de-duplication id, if any.
func PublishOpts(e event.Envelope) []jetstream.PublishOpt {
	if e.MsgID == "" {
		return nil
	}
	return []jetstream.PublishOpt{jetstream.WithMsgID(e.MsgID)}
}

// PublishAll stores events in order and waits until every one is acknowledged. When some
// fail (the server restarting, say), it publishes again from the first that failed, until
// ctx ends: event ids make the repeats harmless. A publish no retry can store (too big, a
// bad subject, refused as bad) fails at once as an *event.Permanent. log, if not nil,
// hears of retries.
func PublishAll(ctx context.Context, js jetstream.JetStream, envs []event.Envelope, log *slog.Logger) error {
	wait := 100 * time.Millisecond
	for len(envs) > 0 {
		futures := make([]jetstream.PubAckFuture, 0, len(envs))
		var sendErr error
		for _, e := range envs {
			m, err := Message(e)
			if err != nil {
				return err
			}
			f, err := js.PublishMsgAsync(m, PublishOpts(e)...)
			if err != nil {
				sendErr = err
				break
			}
			futures = append(futures, f)
		}
		first := len(futures)
		for i, f := range futures {
			select {
			case <-f.Ok():
				continue
			case err := <-f.Err():
				sendErr = err
			case <-ctx.Done():
				return ctx.Err()
			}
			first = i
			break
		}
		if sendErr == nil && first == len(envs) {
			return nil
		}
		failed := envs[min(first, len(envs)-1)]
		if permanent(sendErr) {
			// No retry can store it: the caller gets an error at once, one a stage
			// dead-letters its event for, never a wait.
			return &event.Permanent{Err: fmt.Errorf("publish %s to %s: %w", failed.Kind, failed.Subject, sendErr)}
		}
		if log != nil {
			log.Info("publish failed; retrying", "subject", failed.Subject, "err", sendErr)
		}
		envs = envs[first:]
		sleep(ctx, wait)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("publish %s: %w (last error: %v)", envs[0].Subject, err, sendErr)
		}
		wait = min(2*wait, 2*time.Second)
	}
	return nil
}

// permanent reports whether a publish failed in a way no retry can fix: the event is too
// big or its subject or headers are invalid, the server refused the request as bad, or
// the connection was closed for good.
func permanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) || errors.Is(err, nats.ErrBadHeaderMsg) || errors.Is(err, nats.ErrConnectionClosed) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 400
}

// RequestError is an error a service answered a request with, with a code.
type RequestError struct {
	Code    string // such as "400", "503"
	Message string
}

func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

// ShuttingDown is the message of the 503 a service instance answers while it stops: the
// request was not handled, and another instance may take it.
const ShuttingDown = "shutting down"

// Request sends a request to a service and waits for the reply; an error reply becomes a
// *RequestError. A request that no instance handled is sent again, after a short pause,
// until ctx ends: when the instance that took it answers ShuttingDown, and when none
// is there to take it (as between two instances of a rolling restart). Nothing else is
// repeated: a request that timed out may have been handled.
func Request(ctx context.Context, nc *nats.Conn, subject string, data []byte) ([]byte, error) {
	wait := 5 * time.Millisecond
	for {
		out, err := request(ctx, nc, subject, data)
		var re *RequestError
		retry := errors.Is(err, nats.ErrNoResponders) || errors.As(err, &re) && re.Code == "503" && re.Message == ShuttingDown
		if !retry {
			return out, err
		}
		sleep(ctx, wait)
		if ctx.Err() != nil {
			return nil, err
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

func request(ctx context.Context, nc *nats.Conn, subject string, data []byte) ([]byte, error) {
	msg, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, err
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, &RequestError{Code: code, Message: msg.Header.Get(micro.ErrorHeader)}
	}
	return msg.Data, nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
