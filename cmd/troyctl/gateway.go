package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/bus"
	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/pipeline"
)

// envHTTPTokens holds plain gateway tokens when no file gives them, separated by commas
// or newlines: each is an admin token.
const envHTTPTokens = "TROY_HTTP_TOKENS"

// httpTokensFile is the tokens file in the data directory, where troyctl auth … --http
// adds tokens and serve --http reads them by default.
const httpTokensFile = "http-tokens"

// tokensReload is how often serve looks whether its tokens file changed, so that a token
// issued while it runs is accepted without a restart.
const tokensReload = time.Second

// gatewayFlags are serve's flags for the HTTP gateway.
type gatewayFlags struct {
	addr, tokensFile      string
	certFile, keyFile     string
	maxConns, maxRequests int
}

func (f *gatewayFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "http", "", "serve the HTTP gateway on this address, such as --http 127.0.0.1:8080 (default: off)")
	fl.StringVar(&f.tokensFile, "http-tokens", "", "the gateway's tokens file, as troyctl auth agent|reader|admin --http writes it (hashes and roles; re-read when it changes), such as --http-tokens /etc/troy/http-tokens (default $"+envHTTPTokens+", comma-separated plain admin tokens, else DATA-DIR/"+httpTokensFile+")")
	fl.StringVar(&f.certFile, "http-cert", "", "serve the gateway over HTTPS with this PEM certificate (chain) file, with --http-key, such as --http-cert /etc/troy/tls/cert.pem")
	fl.StringVar(&f.keyFile, "http-key", "", "the PEM private key file of --http-cert, such as --http-key /etc/troy/tls/key.pem")
	fl.IntVar(&f.maxConns, "http-max-conns", gateway.DefaultMaxConns, "connections the gateway keeps open at once; more wait to be accepted, such as --http-max-conns 4096")
	fl.IntVar(&f.maxRequests, "http-max-requests", gateway.DefaultMaxInFlight, "requests the gateway handles at once; more wait up to 5s, then get 503, such as --http-max-requests 256")
}

// tokenSource finds the gateway's tokens: --http-tokens, else $TROY_HTTP_TOKENS, else the
// data directory's tokens file when it exists. file is the file read ("" for the
// environment), to be watched for changes.
func (f *gatewayFlags) tokenSource(dataDir string, log *slog.Logger) (tokens []gateway.Token, file string, err error) {
	file = f.tokensFile
	if file == "" && os.Getenv(envHTTPTokens) != "" {
		tokens, err = gateway.ParseTokenList("$"+envHTTPTokens, os.Getenv(envHTTPTokens))
		if err != nil {
			return nil, "", err
		}
		if len(tokens) > 0 {
			log.Warn("$"+envHTTPTokens+" holds plain tokens: each is an admin token, able to write every agent's traces and store policies; issue tokens with roles instead (troyctl auth agent NAME --http, troyctl auth reader --http, troyctl auth admin --http, which add their hashes to "+filepath.Join(dataDir, httpTokensFile)+"), give them out and unset "+envHTTPTokens, "tokens", len(tokens))
		}
		return tokens, "", nil
	}
	if file == "" {
		file = filepath.Join(dataDir, httpTokensFile)
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			return nil, "", nil // gateway.New says what to do
		}
	}
	tokens, err = readTokens(file, log)
	return tokens, file, err
}

// readTokens reads a tokens file, warning about the plain tokens of older files.
func readTokens(file string, log *slog.Logger) ([]gateway.Token, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--http-tokens: %w", err)
	}
	tokens, err := gateway.ParseTokens(file, string(data))
	if err != nil {
		return nil, err
	}
	plain := 0
	for _, t := range tokens {
		if t.Plain {
			plain++
		}
	}
	if plain > 0 {
		log.Warn("the tokens file holds plain tokens: each is an admin token, able to write every agent's traces and store policies, and is readable by whoever reads the file; issue tokens with roles (troyctl auth agent NAME --http --tokens "+file+", or reader, admin), give them out, then delete the plain lines", "file", file, "plain_tokens", plain)
	}
	return tokens, nil
}

// tlsConfig loads --http-cert and --http-key.
func (f *gatewayFlags) tlsConfig() (*tls.Config, error) {
	if f.certFile == "" && f.keyFile == "" {
		return nil, nil
	}
	if f.certFile == "" || f.keyFile == "" {
		return nil, fmt.Errorf("--http-cert %q, --http-key %q: expected both, a PEM certificate and its key", f.certFile, f.keyFile)
	}
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return nil, fmt.Errorf("--http-cert %s, --http-key %s: %w", f.certFile, f.keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// start serves the gateway until stop is called; it does nothing without --http.
func (f *gatewayFlags) start(ctx context.Context, b *bus.Bus, srv *pipeline.Server, dataDir string, log *slog.Logger) (stop func(), err error) {
	if f.addr == "" {
		return func() {}, nil
	}
	if f.maxConns < 1 || f.maxRequests < 1 {
		return nil, fmt.Errorf("--http-max-conns %d, --http-max-requests %d: expected at least 1 each", f.maxConns, f.maxRequests)
	}
	tc, err := f.tlsConfig()
	if err != nil {
		return nil, err
	}
	tokens, file, err := f.tokenSource(dataDir, log)
	if err != nil {
		return nil, err
	}
	g, err := gateway.New(b, gateway.Config{Tokens: tokens, TLS: tc, MaxConns: f.maxConns, MaxInFlight: f.maxRequests})
	if err != nil {
		return nil, err
	}
	if err := srv.Register(g.Collector()); err != nil {
		return nil, err
	}
	bound, stopServing, err := g.Serve(ctx, f.addr, log)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	log.Info("http gateway", "url", scheme+"://"+bound, "tokens", len(tokens), "tokens_file", file, "max_conns", f.maxConns, "max_requests", f.maxRequests)
	watchCtx, stopWatching := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if file != "" {
			watchTokens(watchCtx, g, file, log)
		}
	}()
	return func() {
		stopWatching()
		<-watched
		stopServing()
	}, nil
}

// watchTokens re-reads the tokens file when its size or time changes, until ctx ends. A
// file that no longer reads is logged and the tokens in use kept, as a policy file's
// broken edit is.
func watchTokens(ctx context.Context, g interface{ SetTokens([]gateway.Token) error }, file string, log *slog.Logger) {
	stamp := func() (time.Time, int64) {
		st, err := os.Stat(file)
		if err != nil {
			return time.Time{}, -1
		}
		return st.ModTime(), st.Size()
	}
	lastTime, lastSize := stamp()
	t := time.NewTicker(tokensReload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		mt, size := stamp()
		if mt.Equal(lastTime) && size == lastSize {
			continue
		}
		lastTime, lastSize = mt, size
		tokens, err := readTokens(file, log)
		if err == nil {
			err = g.SetTokens(tokens)
		}
		if err != nil {
			log.Error("http gateway tokens not reloaded; the tokens in use are kept", "file", file, "err", err)
			continue
		}
		log.Info("http gateway tokens reloaded", "file", file, "tokens", len(tokens))
	}
}
