package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/tlstest"
)

// With a certificate the gateway serves HTTPS: a client that trusts its CA gets a
// decision, one that does not fails the handshake, and plain HTTP gets no answer.
func TestGatewayTLS(t *testing.T) {
	certs := tlstest.New(t, "troy gateway")
	g, _ := newGateway(t, gateway.Config{TLS: certs.Config(t)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, stop, err := g.Serve(ctx, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	check := func(client *http.Client, scheme string) (int, string, error) {
		req, _ := http.NewRequest("POST", scheme+"://"+addr+"/v1/guard/check", strings.NewReader(`{"session": "tls", "agent": "a", "step": {"action": "read"}}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	if status, body, err := check(trusting, "https"); err != nil || status != 200 || !strings.Contains(body, `"allowed":true`) {
		t.Fatalf("a client trusting the CA: %d %s %v", status, body, err)
	}
	other := tlstest.New(t, "someone else")
	untrusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: other.Pool}}}
	var unknown x509.UnknownAuthorityError
	if _, _, err := check(untrusting, "https"); !errors.As(err, &unknown) {
		t.Fatalf("a client trusting another CA: %v, want an unknown authority", err)
	}
	if status, _, err := check(&http.Client{Timeout: 10 * time.Second}, "http"); err == nil && status == 200 {
		t.Fatal("plain HTTP got a decision")
	}
}
