package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/netutil"

	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/mcpproxy"
	"github.com/troy-audit/troy/localguard"
	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/sdk/agent"
)

// defaultMCPPolicy is the policy `troyctl mcp` guards with unless told: the bundled
// template made for MCP traffic (poisoned and changed tools, secrets sent out, bare shells),
// quiet on ordinary use of real servers.
const defaultMCPPolicy = "mcp"

// mcpFlags are troyctl mcp's flags.
type mcpFlags struct {
	policy, name, agentName, dataDir, output, mode string
	maxMessage                                     int
	verbose                                        bool
	lf                                             logFlags

	// Streamable HTTP
	listen, upstream string
	upstreamHeaders  []string
	auth             gatewayFlags
	noAuth           bool

	// a deployment's guard
	nf           natsFlags
	session      string
	guardTimeout time.Duration
	failOpen     bool
}

func newMCPCmd(a *app) *cobra.Command {
	var f mcpFlags
	cmd := &cobra.Command{
		Use:   "mcp [flags] -- COMMAND [ARGS...] | mcp --listen ADDR --upstream URL [flags]",
		Short: "Guard an MCP server (stdio or Streamable HTTP): check every tool call against a policy, record the session",
		Long: `Guard a Model Context Protocol server: every tool call is checked against a policy before
the server sees it, and the session is recorded and reported.

A server that speaks over stdio runs as troyctl's child: configure the MCP client to run
'troyctl mcp -- COMMAND ARGS' where it ran 'COMMAND ARGS'. A server that speaks
Streamable HTTP is proxied: 'troyctl mcp --listen ADDR --upstream URL' serves the
upstream's path on ADDR, and the client is pointed at http://ADDR/PATH. Clients
authenticate with a bearer token of troy's HTTP gateway (troyctl auth agent NAME --http):
an agent token's steps are that agent's; an admin token's are --agent's or the client's.

Every tools/call is a step of the session (a tool_call; the tool's name as its action,
the arguments as step.input, metadata mcp_server and mcp_tool), checked before it is
forwarded. A blocked call never reaches the server: the client gets a failed tool call
(isError, with the policy's reason). An allowed call's result is recorded as the step's
output. Every tools/list answer is recorded as an observation step whose output holds the
tools' names, descriptions and input schemas, and whose metadata mcp_tools_changed names
the tools whose description or schema changed since this session or the server's last
one (remembered under --data-dir/mcp/). Everything else (resources, prompts,
notifications, progress, cancellation, sampling) is relayed unchanged.

Checks are made in this process by default. With --nats they are made by a deployment's
guard service (troyctl serve), which records and reports the session; --policy then
names the policy to use there (default: the deployment's), and proxies given the same
--session (and agent) share one session, so that a rule can see a secret read through
one server and an upload through another. When the deployment cannot answer, tool calls
are blocked unless --fail-open.

The agent is --agent, else the client's clientInfo.name. When the client disconnects
(stdio) or deletes its session or leaves it idle (HTTP), the session ends and its
report.md and audit.json are written under --data-dir/reports/<agent>/<session>/ (or
-o DIR, stdio only). Logs go to stderr; over stdio, stdout is the protocol.`,
		Example: `  troyctl mcp -- npx -y @modelcontextprotocol/server-filesystem /home/me/project
  troyctl mcp --policy policy.json --name files -- npx -y @modelcontextprotocol/server-filesystem /tmp
  troyctl mcp --listen 127.0.0.1:8931 --upstream http://127.0.0.1:3001/mcp --policy policy.json
  troyctl mcp --nats nats://troy:4222 --creds agent.creds --session desk-1 -- npx -y @modelcontextprotocol/server-everything`,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.upstream != "" || f.listen != "" {
				if len(args) > 0 {
					return errors.New("mcp: give either a server's command after -- (stdio) or --listen and --upstream (HTTP), not both")
				}
				if f.upstream == "" || f.listen == "" {
					return errors.New("mcp: an HTTP server is proxied with both --listen ADDR and --upstream URL, as in: troyctl mcp --listen 127.0.0.1:8931 --upstream http://127.0.0.1:3001/mcp")
				}
				return nil
			}
			if cmd.ArgsLenAtDash() != 0 || len(args) == 0 {
				return errors.New("mcp: give the server's command after --, as in: troyctl mcp -- npx -y @modelcontextprotocol/server-filesystem DIR (or --listen and --upstream for an HTTP server)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.mode != "" && !slices.Contains(schemas.Modes(), f.mode) {
				return fmt.Errorf("mcp: --mode %q is not one of %s", f.mode, strings.Join(schemas.Modes(), ", "))
			}
			if f.session != "" && f.nf.opts.URL == "" {
				return errors.New("mcp: --session shares a session of a deployment's guard: give --nats too")
			}
			if f.output != "" && f.upstream != "" {
				return errors.New("mcp: -o names one session's report folder; an HTTP proxy has a session per client, reported under --data-dir/reports/")
			}
			var info *slog.Level
			if f.verbose {
				info = new(slog.LevelInfo)
			}
			logger, err := f.lf.logger(a.stderr, info)
			if err != nil {
				return err
			}
			guards, closeGuards, err := f.guards(cmd, logger)
			if err != nil {
				return err
			}
			defer closeGuards()
			if f.upstream != "" {
				return f.serveHTTP(cmd.Context(), guards, logger, a.stderr)
			}
			res, err := mcpproxy.Run(cmd.Context(), mcpproxy.Options{
				Command: args, Server: f.name, Agent: f.agentName, Guards: guards, DataDir: f.dataDir,
				MaxMessage: f.maxMessage, Logger: logger, Stderr: a.stderr,
			}, a.stdin, a.stdout)
			printSession(a.stderr, res)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.policy, "policy", defaultMCPPolicy, "policy file or bundled template's name (with --nats and no --policy: the deployment's default policy instead)")
	fl.StringVar(&f.name, "name", "", "the server's name in step.metadata.mcp_server (default: the command's base name, or the package a runner such as npx starts; over HTTP the upstream's host:port)")
	fl.StringVar(&f.agentName, "agent", "", "the agent's name (default: the client's clientInfo.name, else "+mcpproxy.DefaultAgent+"; an agent token's own agent over HTTP)")
	fl.StringVar(&f.dataDir, "data-dir", localguard.DefaultDataDir, "directory for the record (outbox/), reports (reports/) and the servers' tools (mcp/)")
	fl.StringVarP(&f.output, "output", "o", "", "directory for the session's report.md and audit.json (default DATA-DIR/reports/AGENT/SESSION; stdio only)")
	fl.StringVar(&f.mode, "mode", "", "enforce (default: blocked calls are not forwarded), monitor or dry-run (recorded, never blocked)")
	fl.IntVar(&f.maxMessage, "max-message", mcpproxy.DefaultMaxMessage, "largest JSON-RPC message in bytes, either way")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log each session, block and the server's start and stop to stderr: --log-level info")
	f.lf.register(cmd, "warn")

	fl.StringVar(&f.listen, "listen", "", "serve a Streamable HTTP proxy on this address, such as --listen 127.0.0.1:8931 (with --upstream)")
	fl.StringVar(&f.upstream, "upstream", "", "the Streamable HTTP MCP server to proxy, its endpoint's URL, such as --upstream http://127.0.0.1:3001/mcp")
	fl.StringArrayVar(&f.upstreamHeaders, "upstream-header", nil, `a header sent to the upstream with every request, such as --upstream-header "Authorization: Bearer $SERVER_TOKEN" (repeatable; the client's own Authorization is never passed on)`)
	fl.StringVar(&f.auth.tokensFile, "http-tokens", "", "the tokens file clients authenticate against, as troyctl auth agent|admin --http writes it (re-read when it changes; default $"+envHTTPTokens+", else DATA-DIR/"+httpTokensFile+")")
	fl.StringVar(&f.auth.certFile, "http-cert", "", "serve --listen over HTTPS with this PEM certificate (chain) file, with --http-key")
	fl.StringVar(&f.auth.keyFile, "http-key", "", "the PEM private key file of --http-cert")
	fl.BoolVar(&f.noAuth, "insecure-no-auth", false, "serve --listen without tokens: anyone who reaches it may use the server as any agent (throw-away demos only)")

	f.nf.register(cmd)
	fl.Lookup("nats").Usage = "check with the guard service of a deployment (troyctl serve) at these NATS URL(s) (default: a guard in this process)"
	fl.StringVar(&f.session, "session", "", "with --nats, a guard session that every proxy naming it (with the same agent) shares, so rules span servers; it is not ended when a client leaves")
	fl.DurationVar(&f.guardTimeout, "guard-timeout", 2*time.Second, "with --nats, the longest wait for one check")
	fl.BoolVar(&f.failOpen, "fail-open", false, "with --nats, allow tool calls when the deployment cannot answer (default: blocked)")
	return cmd
}

// guards are the guards of the sessions: in this process, or a deployment's.
func (f *mcpFlags) guards(cmd *cobra.Command, logger *slog.Logger) (mcpproxy.Guards, func(), error) {
	if f.nf.opts.URL == "" {
		c, err := localguard.LoadPolicy(f.policy)
		if err != nil {
			return nil, nil, fmt.Errorf("mcp: --policy: %w", err)
		}
		return mcpproxy.LocalGuards{Policy: c, ReportDir: f.output,
			Options: localguard.Options{DataDir: f.dataDir, Mode: f.mode, Logger: logger}}, func() {}, nil
	}
	ctx := cmd.Context()
	deployment := f.nf.agentOptions()
	deployment.Name = "troyctl-mcp"
	hash := ""
	if cmd.Flags().Changed("policy") {
		c, err := localguard.LoadPolicy(f.policy)
		if err != nil {
			return nil, nil, fmt.Errorf("mcp: --policy: %w", err)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if hash, err = localguard.StorePolicy(sctx, deployment, c); err != nil {
			return nil, nil, fmt.Errorf("mcp: --policy into the deployment at %s: %w", f.nf.opts.URL, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := agent.Connect(cctx, deployment)
	if err != nil {
		return nil, nil, fmt.Errorf("mcp: --nats %s: %w", f.nf.opts.URL, err)
	}
	return mcpproxy.RemoteGuards{Conn: conn, Session: f.session, Options: agent.GuardOptions{
		Mode: f.mode, Policy: hash, Timeout: f.guardTimeout, FailOpen: f.failOpen,
	}}, conn.Close, nil
}

// printSession tells where a session's report is.
func printSession(w io.Writer, res mcpproxy.Result) {
	switch r := res.Report; {
	case res.Session == "":
	case r.Markdown != "":
		fmt.Fprintf(w, "troy: session %s: %s, %s\n", res.Session, r.Markdown, r.JSON)
	case r.Shared:
		fmt.Fprintf(w, "troy: session %s (agent %s) goes on in the deployment; it is reported when it ends there\n", res.Session, r.Agent)
	case r.Deployment:
		fmt.Fprintf(w, "troy: session %s (agent %s) ended; the deployment reports it\n", res.Session, r.Agent)
	}
}

// serveHTTP proxies a Streamable HTTP server until ctx ends, then ends every session.
func (f *mcpFlags) serveHTTP(ctx context.Context, guards mcpproxy.Guards, logger *slog.Logger, stderr io.Writer) error {
	header := http.Header{}
	for _, h := range f.upstreamHeaders {
		k, v, ok := strings.Cut(h, ":")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return fmt.Errorf(`mcp: --upstream-header %q: expected "Name: value"`, h)
		}
		header.Add(k, strings.TrimSpace(v))
	}
	var mu sync.Mutex // sessions end on the proxy's goroutines
	p, err := mcpproxy.NewHTTP(mcpproxy.HTTPOptions{
		Upstream: f.upstream, Header: header, Server: f.name, Agent: f.agentName, Guards: guards,
		DataDir: f.dataDir, MaxMessage: f.maxMessage, Logger: logger,
		OnEnd: func(res mcpproxy.Result, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Fprintf(stderr, "troy: session %s: %v\n", res.Session, err)
				return
			}
			printSession(stderr, res)
		},
	})
	if err != nil {
		return err
	}
	handler, err := f.authenticate(ctx, p, logger)
	if err != nil {
		return err
	}
	tc, err := f.auth.tlsConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("mcp: --listen: %w", err)
	}
	// As at the gateway: more connections wait in the kernel's queue.
	ln = netutil.LimitListener(ln, gateway.DefaultMaxConns)
	hs := &http.Server{
		Handler: handler, TLSConfig: tc, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// No write deadline: an event stream may be long. The body has its own deadline.
		ReadHeaderTimeout: gateway.DefaultReadHeaderTimeout, IdleTimeout: gateway.DefaultIdleTimeout, MaxHeaderBytes: 64 << 10,
	}
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	// The address line is what a script or a test waits for: the port may have been 0.
	fmt.Fprintf(stderr, "troy: guarding %s at %s://%s%s\n", f.upstream, scheme, ln.Addr(), p.Path())
	served := make(chan error, 1)
	go func() {
		if tc != nil {
			served <- hs.ServeTLS(ln, "", "")
		} else {
			served <- hs.Serve(ln)
		}
	}()
	sweepCtx, stopSweeping := context.WithCancel(context.Background())
	swept := make(chan struct{})
	go func() { defer close(swept); p.Run(sweepCtx) }()
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	stopSweeping() // ends every session, their reports written
	<-swept
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// authenticate requires the gateway's bearer tokens: an agent token speaks for its agent,
// an admin token for --agent or the client; a reader token may not call tools.
func (f *mcpFlags) authenticate(ctx context.Context, p http.Handler, logger *slog.Logger) (http.Handler, error) {
	if f.noAuth {
		logger.Warn("MCP PROXY AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach " + f.listen + " may call the server's tools as any agent; use it for throw-away demos only")
		return p, nil
	}
	tokens, file, err := f.auth.tokenSource(f.dataDir, logger)
	if err != nil {
		return nil, err
	}
	var keys gateway.Keyring
	if err := keys.SetTokens(tokens); err != nil {
		return nil, fmt.Errorf("mcp: --listen needs the gateway's tokens: issue one with troyctl auth agent NAME --http --data-dir %s (or give --http-tokens FILE), or pass --insecure-no-auth for a throw-away demo", f.dataDir)
	}
	if file != "" {
		go watchTokens(ctx, &keys, file, logger)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := keys.Authenticate(r)
		switch {
		case !ok:
			gateway.Unauthorized(w)
		case tok.Role == gateway.RoleAgent:
			p.ServeHTTP(w, r.WithContext(mcpproxy.WithAgent(r.Context(), tok.Agent)))
		case tok.Role == gateway.RoleAdmin:
			p.ServeHTTP(w, r)
		default:
			gateway.Forbidden(w, tok, "not call an MCP server's tools")
		}
	}), nil
}
