// Command troyctl audits what AI agents do: it evaluates agent traces against policies,
// scores their risk and writes reports, and answers guard checks for single actions.
//
// This package only wires the other packages to the command line.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitError   = 1 // bad input or a failed command
	exitBlocked = 2 // check: the action is not allowed
	// exitFound (3): drift found, a regression, or a risk that rose (diff)
	exitModelFailed = 4 // audit, batch: explanations were asked for and every model call failed
)

// exitCodeError ends the command with a given exit code; its message, if any, is printed.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	stdout, stderr = serialized(stdout), serialized(stderr)
	root := newRoot(&app{stdin: stdin, stdout: stdout, stderr: stderr})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitError
	var ce *exitCodeError
	if errors.As(err, &ce) {
		code = ce.code
	}
	if msg := withHint(err.Error()); msg != "" {
		for _, line := range strings.Split(msg, "\n") {
			fmt.Fprintf(stderr, "troyctl: %s\n", line)
		}
	}
	return code
}

// withHint adds to an error what to do about it, where the error alone does not say.
func withHint(msg string) string {
	if strings.Contains(strings.ToLower(msg), "authorization violation") && !strings.Contains(msg, "\n") {
		msg += " (the NATS server wants a credential: --creds FILE, one troyctl auth issued, or --data-dir of the serve, whose admin credential commands use by themselves)"
	}
	return msg
}

// serialized makes one write at a time of a writer that is not a file: a command's
// goroutines (a service's log, its closing lines) write to the same stream, and a file's
// writes are whole already, while a buffer's are not. Files are left as they are, so that
// commands can tell a terminal.
func serialized(w io.Writer) io.Writer {
	if _, ok := w.(*os.File); ok || w == nil {
		return w
	}
	return &lockedWriter{w: w}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// app carries the process's standard streams to the commands.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "troyctl",
		Short: "Audit what AI agents do: policies, risk scores and reports for agent traces",
		Long: `troyctl audits what AI agents do. It evaluates agent traces (every LLM call, tool
call, decision and observation) against policy rules, scores the risk, and writes
markdown and JSON reports. It also checks single actions before they run.`,
		Example: `  troyctl audit examples/traces/pii-exfiltration.json examples/policy.json
  troyctl batch examples/traces examples/policy.json
  troyctl check examples/policy.json -a bash --metadata '{"permission_level": "admin"}'
  troyctl policies list`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionLine(readBuildInfo()),
		// Environment variables stand for connection flags the command line did not give.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return applyEnv(cmd, os.LookupEnv) },
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.AddCommand(
		newAuditCmd(a),
		newBatchCmd(a),
		newCheckCmd(a),
		newGuardCmd(a),
		newMCPCmd(a),
		newReplayCmd(a),
		newDiffCmd(a),
		newServeCmd(a),
		newAuthCmd(a),
		newBenchCmd(a),
		newPoliciesCmd(a),
		newMigrateCmd(a),
		newTrendsCmd(a),
		newDriftCmd(a),
		newRegressCmd(a),
		newSQLCmd(a),
		newVersionCmd(a),
		newVerifyCmd(a),
		newReportCmd(a),
		newHealthCmd(a),
	)
	bindEnv(root, envBindings())
	return root
}
