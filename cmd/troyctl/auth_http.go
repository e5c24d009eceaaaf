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
	fl.StringVarP(&f.output, "output", "o", "", "write the token to this new file (owner only) instead of stdout, such as -o bot.token")
	fl.StringVar(&f.dataDir, "data-dir", ".troy", "serve's data directory, whose "+httpTokensFile+" is the default tokens file")
	fl.BoolVar(&f.asJSON, "json", false, `print {"id", "role", "agent", "token", "token_file", "tokens_file"} as JSON`)
	f.registerHTTP(cmd)
}

// registerHTTP adds --http and --tokens, for commands that issue NATS credentials too.
func (f *httpTokenFlags) registerHTTP(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.http, "http", false, "issue a token for the HTTP gateway (troyctl serve --http)")
	fl.StringVar(&f.tokens, "tokens", "", "with --http, the tokens file to add the token's hash to, the one serve reads with --http-tokens (default DATA-DIR/"+httpTokensFile+")")
}

// newAuthAdminCmd is troyctl auth admin --http: a gateway token that may do everything.
// serve creates the admin's NATS credential itself (DATA-DIR/auth/admin.creds).
func newAuthAdminCmd(a *app) *cobra.Command {
	var f httpTokenFlags
	cmd := &cobra.Command{
		Use:   "admin --http",
		Short: "Issue a gateway token that may do everything, storing policies included",
		Long: `Issue a bearer token for the HTTP gateway with the admin role: every endpoint,
any agent's traces, and storing policies (PUT /v1/policies/{sha256}). Printed once; its
SHA-256 is added to the tokens file. The admin's NATS credential is not issued here:
serve creates it at its first start, in DATA-DIR/auth/admin.creds.`,
		Example: `  troyctl auth admin --http
  troyctl auth admin --http -o admin.token --tokens /etc/troy/http-tokens`,
		Args: exactArgs(0, "no arguments: troyctl auth admin --http"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return issueHTTPToken(a, &f, gateway.RoleAdmin, "")
		},
	}
	f.register(cmd)
	return cmd
}

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
