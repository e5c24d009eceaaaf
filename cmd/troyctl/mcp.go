package main

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/mcpproxy"
	"github.com/troy-audit/troy/localguard"
	"github.com/troy-audit/troy/schemas"
)

// defaultMCPPolicy is the policy `troyctl mcp` guards with unless told: the smallest
// bundled template, which blocks bare shells and destructive tools called without an
// approval token and flags injection phrases in arguments.
const defaultMCPPolicy = "minimal"

func newMCPCmd(a *app) *cobra.Command {
	var (
		policy, name, agentName, dataDir, output, mode string
		maxMessage                                     int
		verbose                                        bool
	)
	cmd := &cobra.Command{
		Use:   "mcp [flags] -- COMMAND [ARGS...]",
		Short: "Guard a stdio MCP server: check every tool call against a policy, record the session",
		Long: `Run a Model Context Protocol server (one that speaks over stdio) as a child, and relay
JSON-RPC between it and the MCP client that started troyctl: configure the client to run
'troyctl mcp -- COMMAND ARGS' where it ran 'COMMAND ARGS'.

Every tools/call is a step of the session (a tool_call; the tool's name as its action,
the arguments as step.input, metadata mcp_server and mcp_tool), checked in this process
before it is forwarded. A blocked call never reaches the server: the client gets a
failed tool call (isError, with the policy's reason). An allowed call's result is
recorded as the step's output. Every tools/list answer is recorded as an observation
step whose output holds the tools' names, descriptions and input schemas, and whose
metadata mcp_tools_changed names the tools whose description or schema changed since this
session or the server's last one (remembered under --data-dir/mcp/). Everything else
(resources, prompts, notifications, progress, cancellation, sampling) is relayed
unchanged.

The agent is --agent, else the client's clientInfo.name. When the client disconnects,
the server is stopped and the session's report.md and audit.json are written under
--data-dir/reports/<agent>/<session>/ (or -o DIR). Logs go to stderr; stdout is the
protocol.`,
		Example: `  troyctl mcp -- npx -y @modelcontextprotocol/server-filesystem /home/me/project
  troyctl mcp --policy policy.json --name files -- npx -y @modelcontextprotocol/server-filesystem /tmp`,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 || len(args) == 0 {
				return errors.New("mcp: give the server's command after --, as in: troyctl mcp -- npx -y @modelcontextprotocol/server-filesystem DIR")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if mode != "" && !slices.Contains(schemas.Modes(), mode) {
				return fmt.Errorf("mcp: --mode %q is not one of %s", mode, strings.Join(schemas.Modes(), ", "))
			}
			c, err := localguard.LoadPolicy(policy)
			if err != nil {
				return fmt.Errorf("mcp: --policy: %w", err)
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			res, err := mcpproxy.Run(cmd.Context(), mcpproxy.Options{
				Command: args, Server: name, Agent: agentName, Policy: c,
				Guard:     localguard.Options{DataDir: dataDir, Mode: mode},
				ReportDir: output, MaxMessage: maxMessage, Logger: logger, Stderr: a.stderr,
			}, a.stdin, a.stdout)
			if res.Report.Markdown != "" {
				fmt.Fprintf(a.stderr, "troy: session %s: %s, %s\n", res.Session, res.Report.Markdown, res.Report.JSON)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&policy, "policy", defaultMCPPolicy, "policy file or bundled template's name")
	f.StringVar(&name, "name", "", "the server's name in step.metadata.mcp_server (default: the command's base name, or the package a runner such as npx starts)")
	f.StringVar(&agentName, "agent", "", "the agent's name (default: the client's clientInfo.name, else "+mcpproxy.DefaultAgent+")")
	f.StringVar(&dataDir, "data-dir", localguard.DefaultDataDir, "directory for the record (outbox/) and reports (reports/)")
	f.StringVarP(&output, "output", "o", "", "directory for the session's report.md and audit.json (default DATA-DIR/reports/AGENT/SESSION)")
	f.StringVar(&mode, "mode", "", "enforce (default: blocked calls are not forwarded), monitor or dry-run (recorded, never blocked)")
	f.IntVar(&maxMessage, "max-message", mcpproxy.DefaultMaxMessage, "largest JSON-RPC message in bytes, either way")
	f.BoolVarP(&verbose, "verbose", "v", false, "log each session, block and the server's start and stop to stderr")
	return cmd
}
