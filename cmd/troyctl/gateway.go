package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/bus"
	"github.com/troy-audit/troy/gateway"
	"github.com/troy-audit/troy/pipeline"
)

// envHTTPTokens holds the gateway's tokens when no file gives them, separated by commas
// or newlines.
const envHTTPTokens = "TROY_HTTP_TOKENS"

// gatewayFlags are serve's flags for the HTTP gateway.
type gatewayFlags struct{ addr, tokensFile string }

func (f *gatewayFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.addr, "http", "", "serve the HTTP gateway on this address, such as 127.0.0.1:8080 (default: off)")
	cmd.Flags().StringVar(&f.tokensFile, "http-tokens", "", "file of the gateway's bearer tokens, one per line (default $"+envHTTPTokens+")")
}

func (f *gatewayFlags) tokens() ([]string, error) {
	raw := os.Getenv(envHTTPTokens)
	if f.tokensFile != "" {
		data, err := os.ReadFile(f.tokensFile)
		if err != nil {
			return nil, fmt.Errorf("--http-tokens: %w", err)
		}
		raw = string(data)
	}
	return strings.FieldsFunc(raw, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }), nil
}

// start serves the gateway until stop is called; it does nothing without --http.
func (f *gatewayFlags) start(ctx context.Context, b *bus.Bus, srv *pipeline.Server, log *slog.Logger) (stop func(), err error) {
	if f.addr == "" {
		return func() {}, nil
	}
	tokens, err := f.tokens()
	if err != nil {
		return nil, err
	}
	g, err := gateway.New(b, gateway.Config{Tokens: tokens, Info: srv.Policies().Info})
	if err != nil {
		return nil, err
	}
	bound, stop, err := g.Serve(ctx, f.addr, log)
	if err != nil {
		return nil, err
	}
	log.Info("http gateway", "addr", bound, "tokens", len(tokens))
	return stop, nil
}
