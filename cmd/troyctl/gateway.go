package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/pipeline"
)

// envHTTPTokens holds the gateway's tokens when no file gives them, separated by commas
// or newlines.
const envHTTPTokens = "TROY_HTTP_TOKENS"

// gatewayFlags are serve's flags for the HTTP gateway.
type gatewayFlags struct {
	addr, tokensFile      string
	maxConns, maxRequests int
}

func (f *gatewayFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "http", "", "serve the HTTP gateway on this address, such as --http 127.0.0.1:8080 (default: off)")
	fl.StringVar(&f.tokensFile, "http-tokens", "", "file of the gateway's bearer tokens, one per line; blank lines and lines starting with # are ignored, such as --http-tokens /etc/troy/tokens (default $"+envHTTPTokens+", comma-separated)")
	fl.IntVar(&f.maxConns, "http-max-conns", gateway.DefaultMaxConns, "connections the gateway keeps open at once; more wait to be accepted, such as --http-max-conns 4096")
	fl.IntVar(&f.maxRequests, "http-max-requests", gateway.DefaultMaxInFlight, "requests the gateway handles at once; more wait up to 5s, then get 503, such as --http-max-requests 256")
}

func (f *gatewayFlags) tokens() ([]string, error) {
	if f.tokensFile != "" {
		data, err := os.ReadFile(f.tokensFile)
		if err != nil {
			return nil, fmt.Errorf("--http-tokens: %w", err)
		}
		return gateway.ParseTokens(f.tokensFile, string(data))
	}
	return gateway.ParseTokenList("$"+envHTTPTokens, os.Getenv(envHTTPTokens))
}

// start serves the gateway until stop is called; it does nothing without --http.
func (f *gatewayFlags) start(ctx context.Context, b *bus.Bus, srv *pipeline.Server, log *slog.Logger) (stop func(), err error) {
	if f.addr == "" {
		return func() {}, nil
	}
	if f.maxConns < 1 || f.maxRequests < 1 {
		return nil, fmt.Errorf("--http-max-conns %d, --http-max-requests %d: expected at least 1 each", f.maxConns, f.maxRequests)
	}
	tokens, err := f.tokens()
	if err != nil {
		return nil, err
	}
	g, err := gateway.New(b, gateway.Config{Tokens: tokens, Info: srv.Policies().Info, MaxConns: f.maxConns, MaxInFlight: f.maxRequests})
	if err != nil {
		return nil, err
	}
	bound, stop, err := g.Serve(ctx, f.addr, log)
	if err != nil {
		return nil, err
	}
	log.Info("http gateway", "addr", bound, "tokens", len(tokens), "max_conns", f.maxConns, "max_requests", f.maxRequests)
	return stop, nil
}
