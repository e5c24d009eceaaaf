package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troy-audit/troy/internal/gateway"
)

// countingListener counts the connections the server holds open, and the most at once.
type countingListener struct {
	net.Listener
	open, peak atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := l.open.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	once sync.Once
	l    *countingListener
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// serveGateway serves a gateway with cfg on loopback, as serve --http does.
func serveGateway(t *testing.T, cfg gateway.Config) (addr string, ln *countingListener) {
	t.Helper()
	g, _ := newGateway(t, cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = &countingListener{Listener: l}
	stop := g.ServeListener(context.Background(), ln, nil)
	t.Cleanup(stop)
	return l.Addr().String(), ln
}

// dial opens a raw connection that the test writes HTTP to by hand.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads what the server sends until it closes the connection, and fails if
// that takes longer than d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration, what string) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the connection is still open after %s (read so far: %q)", what, d, got)
	}
	return string(got)
}

const checkBody = `{"session": "limits", "agent": "a", "mode": "monitor", "step": {"action": "read"}}`

// A client cannot hold a connection: not by sending nothing, nor half its headers or its
// body, nor by keeping it idle after a request.
func TestConnectionsCannotBeHeld(t *testing.T) {
	addr, _ := serveGateway(t, gateway.Config{ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	const limit = 5 * time.Second // far above the timeouts; the connection would stay open forever without them

	silent := dial(t, addr)
	closedWithin(t, silent, limit, "a connection that sends nothing")

	partial := dial(t, addr)
	fmt.Fprintf(partial, "POST /v1/guard/check HTTP/1.1\r\nHost: x\r\n")
	closedWithin(t, partial, limit, "a connection that never ends its headers")

	slowBody := dial(t, addr)
	fmt.Fprintf(slowBody, "POST /v1/guard/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", token, len(checkBody), checkBody[:10])
	if got := closedWithin(t, slowBody, limit, "a body that never ends"); got != "" && !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Fatalf("a body that never ends: %q", got)
	}

	idle := dial(t, addr)
	fmt.Fprintf(idle, "POST /v1/guard/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", token, len(checkBody), checkBody)
	if got := closedWithin(t, idle, limit, "an idle kept-alive connection"); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("the request before idling: %q", got)
	}
}

// Connections past the limit wait to be accepted: many clients that send nothing never
// make the server hold more than the limit, and the requests queued behind them are
// answered once the silent ones time out.
func TestConnectionLimit(t *testing.T) {
	const maxConns = 4
	addr, ln := serveGateway(t, gateway.Config{MaxConns: maxConns, ReadHeaderTimeout: 200 * time.Millisecond})
	for range 3 * maxConns {
		dial(t, addr) // and say nothing
	}
	client := &http.Client{Timeout: 30 * time.Second}
	errs := make(chan error, maxConns)
	for i := range maxConns {
		go func() {
			req, _ := http.NewRequest("POST", "http://"+addr+"/v1/guard/check", strings.NewReader(strings.Replace(checkBody, "limits", fmt.Sprint("limits-", i), 1)))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			errs <- err
		}()
	}
	for range maxConns {
		if err := <-errs; err != nil {
			t.Fatalf("a request queued behind silent connections: %v", err)
		}
	}
	if peak := ln.peak.Load(); peak > maxConns {
		t.Fatalf("the server held %d connections at once, over the limit of %d", peak, maxConns)
	}
}

// Past MaxInFlight requests in hand, a request waits for a slot for up to Timeout, then is
// answered 503 with Retry-After; once a slot frees, requests are served again.
func TestRequestLimit(t *testing.T) {
	addr, _ := serveGateway(t, gateway.Config{MaxInFlight: 1, Timeout: 300 * time.Millisecond})
	holder := dial(t, addr)
	fmt.Fprintf(holder, "POST /v1/guard/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", token, len(checkBody), checkBody[:10])

	client := &http.Client{Timeout: 10 * time.Second}
	check := func() (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/guard/check", strings.NewReader(checkBody))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp, string(raw)
	}
	// The holder's request takes the one slot as soon as its headers are read; until
	// then other requests are served.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := check()
		if resp.StatusCode == http.StatusServiceUnavailable {
			if resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"busy"`) {
				t.Fatalf("a request past the limit: %s %v %s", resp.Status, resp.Header, body)
			}
			break
		}
		if resp.StatusCode != 200 || time.Now().After(deadline) {
			t.Fatalf("while the slot is taken: %s %s", resp.Status, body)
		}
	}
	fmt.Fprint(holder, checkBody[10:])
	r := bufio.NewReader(holder)
	_ = holder.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("the holder's request: %q %v", line, err)
	}
	if resp, body := check(); resp.StatusCode != 200 {
		t.Fatalf("after the slot is free: %s %s", resp.Status, body)
	}
}

// A request without a valid token is answered at once, without its body being read, and
// its connection is closed: whoever has no token cannot keep connections open, even with
// the idle timeout far away.
func TestUnauthenticatedConnectionsAreClosed(t *testing.T) {
	addr, _ := serveGateway(t, gateway.Config{IdleTimeout: time.Hour, ReadTimeout: time.Hour})
	for _, tt := range []struct{ name, request string }{
		{"no token, whole body", "POST /v1/guard/check HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"},
		{"no token, body never sent", "POST /v1/guard/check HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"},
		{"a wrong token", "POST /v1/steps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 2\r\n\r\n{}"},
		{"another scheme", "GET /v1/traces/t/report?agent=a HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + token + "\r\n\r\n"},
	} {
		c := dial(t, addr)
		fmt.Fprint(c, tt.request)
		if got := closedWithin(t, c, 5*time.Second, tt.name); !strings.HasPrefix(got, "HTTP/1.1 401") || !strings.Contains(got, `"unauthorized"`) {
			t.Fatalf("%s: %q", tt.name, got)
		}
	}
}
