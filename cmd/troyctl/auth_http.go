package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/reporter"
)

// httpTokenFlags are the flags of troyctl auth agent|reader|admin for gateway tokens.
type httpTokenFlags struct {
	http           bool
	output, tokens string
	dataDir        string
	asJSON         bool
}

func (f *httpTokenFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.http, "http", false, "issue a token for the HTTP gateway (troyctl serve --http)")
	fl.StringVarP(&f.output, "output", "o", "", "write the token to this new file (owner only) instead of stdout, such as -o bot.token")
	fl.StringVar(&f.tokens, "tokens", "", "the tokens file to add the token's hash to, the one serve reads with --http-tokens (default DATA-DIR/"+httpTokensFile+")")
	fl.StringVar(&f.dataDir, "data-dir", ".troy", "serve's data directory, whose "+httpTokensFile+" is the default tokens file")
	fl.BoolVar(&f.asJSON, "json", false, `print {"id", "role", "agent", "token", "token_file", "tokens_file"} as JSON`)
}

// newAuthHTTPCmds are troyctl auth agent, reader and admin, issuing gateway tokens.
func newAuthHTTPCmds(a *app) []*cobra.Command {
	var agentF, readerF, adminF httpTokenFlags
	agentCmd := &cobra.Command{
		Use:   "agent NAME --http",
		Short: "Issue a gateway token for one agent: it writes that agent's traces and checks its sessions",
		Long: `Issue a bearer token for the HTTP gateway scoped to the agent NAME: it may publish
NAME's steps, outputs and ends, check NAME's guard sessions and read NAME's reports, and
nothing else (another agent's traces, storing policies: 403). The token is printed once
(or written to -o FILE); its SHA-256 is added to the tokens file, which a running
troyctl serve --http re-reads within a second.`,
		Example: `  troyctl auth agent support-bot --http
  TROY_TOKEN=$(troyctl auth agent support-bot --http) python agent.py
  troyctl auth agent support-bot --http -o support-bot.token --tokens /etc/troy/http-tokens`,
		Args: exactArgs(1, "the agent's name, such as troyctl auth agent support-bot --http"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return issueHTTPToken(a, &agentF, gateway.RoleAgent, args[0])
		},
	}
	readerCmd := &cobra.Command{
		Use:   "reader --http",
		Short: "Issue a gateway token that reads reports and writes nothing",
		Long: `Issue a bearer token for the HTTP gateway with the reader role: it may read every
trace's report (GET /v1/traces/{id}/report) and nothing else. Printed once; its SHA-256
is added to the tokens file.`,
		Example: `  troyctl auth reader --http
  troyctl auth reader --http --json`,
		Args: exactArgs(0, "no arguments: troyctl auth reader --http"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return issueHTTPToken(a, &readerF, gateway.RoleReader, "")
		},
	}
	adminCmd := &cobra.Command{
		Use:   "admin --http",
		Short: "Issue a gateway token that may do everything, storing policies included",
		Long: `Issue a bearer token for the HTTP gateway with the admin role: every endpoint,
any agent's traces, and storing policies (PUT /v1/policies/{sha256}). Printed once; its
SHA-256 is added to the tokens file.`,
		Example: `  troyctl auth admin --http
  troyctl auth admin --http -o admin.token --tokens /etc/troy/http-tokens`,
		Args: exactArgs(0, "no arguments: troyctl auth admin --http"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return issueHTTPToken(a, &adminF, gateway.RoleAdmin, "")
		},
	}
	agentF.register(agentCmd)
	readerF.register(readerCmd)
	adminF.register(adminCmd)
	return []*cobra.Command{agentCmd, readerCmd, adminCmd}
}

// exactArgs is cobra.ExactArgs with a one-line error saying what was expected.
func exactArgs(n int, want string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s: %d arguments given, expected %s", strings.TrimPrefix(cmd.CommandPath(), "troyctl "), len(args), want)
		}
		return nil
	}
}

// issuedToken is what --json prints.
type issuedToken struct {
	ID         string `json:"id"`
	Role       string `json:"role"`
	Agent      string `json:"agent,omitempty"`
	Token      string `json:"token,omitempty"`
	TokenFile  string `json:"token_file,omitempty"`
	TokensFile string `json:"tokens_file"`
}

func issueHTTPToken(a *app, f *httpTokenFlags, role gateway.Role, agent string) error {
	if !f.http {
		example := string(role)
		if role == gateway.RoleAgent {
			example += " NAME"
		}
		return fmt.Errorf("auth %s: expected --http: this issues tokens for the HTTP gateway, such as troyctl auth %s --http", role, example)
	}
	secret, tok, err := gateway.Issue(role, agent)
	if err != nil {
		return err
	}
	tokensFile := f.tokens
	if tokensFile == "" {
		tokensFile = filepath.Join(f.dataDir, httpTokensFile)
	}
	// The token is written out before its hash is added, so that a token that could not
	// be handed over is never accepted.
	if f.output != "" {
		out, err := os.OpenFile(f.output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("-o %s: the file exists; choose a new file, or remove it first", f.output)
		}
		if err != nil {
			return fmt.Errorf("-o %s: %w", f.output, err)
		}
		_, err = fmt.Fprintln(out, secret)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("-o %s: %w", f.output, err)
		}
	}
	if err := appendTokenLine(tokensFile, tok); err != nil {
		return err
	}
	what := fmt.Sprintf("%s token %s", role, tok.ID())
	if role == gateway.RoleAgent {
		what = fmt.Sprintf("agent token %s for %q", tok.ID(), agent)
	}
	if f.asJSON {
		out := issuedToken{ID: tok.ID(), Role: string(role), Agent: agent, TokenFile: f.output, TokensFile: tokensFile}
		if f.output == "" {
			out.Token = secret
		}
		return reporter.EncodeJSON(a.stdout, out)
	}
	if f.output != "" {
		fmt.Fprintf(a.stdout, "%s written to %s; its hash added to %s\n", what, f.output, tokensFile)
		return nil
	}
	// The token alone on stdout, for TOKEN=$(troyctl auth …); the rest on stderr.
	fmt.Fprintln(a.stdout, secret)
	fmt.Fprintf(a.stderr, "troyctl: %s; its hash added to %s. It is shown this once: keep it where its holder reads it (TROY_TOKEN).\n", what, tokensFile)
	return nil
}

// appendTokenLine adds a token's entry to a tokens file, made owner-only when new, with a
// comment saying when it was issued.
func appendTokenLine(path string, tok gateway.Token) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("--tokens %s: %w", path, err)
	}
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("--tokens %s: %w", path, err)
	}
	defer fh.Close()
	// A file whose last line has no newline gets one first, so that the entry stays a
	// line of its own.
	sep := ""
	if st, err := fh.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := fh.ReadAt(last, st.Size()-1); err != nil && err != io.EOF {
			return fmt.Errorf("--tokens %s: %w", path, err)
		}
		if last[0] != '\n' {
			sep = "\n"
		}
	}
	entry := fmt.Sprintf("%s# %s token %s issued %s\n%s\n", sep, tok.Role, tok.ID(), time.Now().UTC().Format(time.RFC3339), tok.Line())
	// One write with O_APPEND: two commands issuing at once do not mix their lines.
	if _, err := fh.WriteString(entry); err != nil {
		return fmt.Errorf("--tokens %s: %w", path, err)
	}
	return fh.Close()
}
