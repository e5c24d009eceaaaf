package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/gateway"
	"github.com/troy-audit/troy/internal/natsauth"
	"github.com/troy-audit/troy/sdk/wire"
)

// serveURLFile, in the auth directory, is where serve writes its NATS address, so that
// troyctl auth revoke can ask it to load a revocation at once.
const serveURLFile = "serve.url"

func newAuthCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Issue, list and revoke credentials (NATS and the HTTP gateway); the key that verifies reports",
		Long: `troyctl serve's embedded NATS server requires credentials. At its first start serve
creates an operator, troy's account and two credentials in DATA-DIR/auth (owner only):
service.creds, used by serve's own components, and admin.creds, which troyctl commands
run beside serve find by themselves (or give --creds FILE, or set TROY_CREDS).

An agent's credential may publish that agent's steps, ask the guard about its sessions
and read its own replies, nothing else; a reader's may read results and steps and
publish nothing. The NATS server enforces these permissions.

With --http, agent, reader and admin issue a bearer token for the HTTP gateway instead:
printed once, only its SHA-256 kept in the tokens file serve --http reads
(DATA-DIR/http-tokens, or --tokens FILE).

public-key prints the Ed25519 public key that verifies the reports this machine signs.`,
		Example: `  troyctl auth agent support-bot -o support-bot.creds
  TROY_CREDS=support-bot.creds python agent.py
  troyctl auth agent support-bot --http -o support-bot.token
  troyctl auth reader -o dashboards.creds
  troyctl auth admin --http
  troyctl auth list
  troyctl auth revoke UABC...
  troyctl auth nats-config > troy-accounts.conf
  troyctl auth public-key --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("auth: expected a subcommand: agent, reader, admin, list, revoke, nats-config or public-key")
		},
	}
	cmd.AddCommand(newAuthAgentCmd(a), newAuthReaderCmd(a), newAuthAdminCmd(a), newAuthListCmd(a), newAuthRevokeCmd(a), newAuthNATSConfigCmd(a), newAuthPublicKeyCmd(a))
	return cmd
}

// oneArg requires exactly one argument, what, and says so in one line.
func oneArg(cmd, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%s: expected one argument, %s; got %d", cmd, what, len(args))
		}
		return nil
	}
}

// authDirFlag adds --data-dir, the directory whose auth/ holds the keys.
func authDirFlag(cmd *cobra.Command, dataDir *string) {
	cmd.Flags().StringVar(dataDir, "data-dir", ".troy", "troyctl serve's data directory, whose auth/ holds the keys")
}

func newAuthAgentCmd(a *app) *cobra.Command {
	var dataDir, out string
	var asJSON bool
	var h httpTokenFlags
	cmd := &cobra.Command{
		Use:   "agent NAME",
		Short: "Issue a credential for one agent",
		Long: `Issue a NATS credential for the agent NAME, signed with the account's signing key (no
server needed). It may publish NAME's steps (troy.steps.<NAME>.>), ask the guard about
NAME's sessions (troy.guard.*.<NAME>) and read replies under its own inbox; the SDKs
take it as a file (Go agent.Options.CredsFile, TypeScript creds) or from TROY_CREDS.
Without -o the credential is printed.

With --http it issues a bearer token for the HTTP gateway scoped to NAME instead: it may
publish NAME's steps, outputs and ends, check NAME's guard sessions and read NAME's
reports, and nothing else (403). The token is printed once (or written to -o FILE); its
SHA-256 is added to the tokens file, which a running troyctl serve --http re-reads within
a second.`,
		Example: `  troyctl auth agent support-bot -o support-bot.creds
  troyctl auth agent support-bot --data-dir /var/lib/troy -o /etc/troy/support-bot.creds --json
  TROY_TOKEN=$(troyctl auth agent support-bot --http) python agent.py`,
		Args: oneArg("auth agent", "the agent's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if h.http {
				h.output, h.dataDir, h.asJSON = out, dataDir, asJSON
				return issueHTTPToken(a, &h, gateway.RoleAgent, args[0])
			}
			return issue(a, dataDir, natsauth.RoleAgent, args[0], out, asJSON)
		},
	}
	h.registerHTTP(cmd)
	authDirFlag(cmd, &dataDir)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the credential to this file (owner only) instead of stdout")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the credential's id, role, scope and file as JSON (needs -o)")
	return cmd
}

func newAuthReaderCmd(a *app) *cobra.Command {
	var dataDir, out string
	var asJSON bool
	var h httpTokenFlags
	cmd := &cobra.Command{
		Use:   "reader",
		Short: "Issue a credential that reads results and steps",
		Long: `Issue a NATS credential for analytics, dashboards and replay: it may read the results
and steps streams and publish nothing. Without -o the credential is printed.

With --http it issues a bearer token for the HTTP gateway with the reader role instead: it
may read every trace's report and nothing else.`,
		Example: `  troyctl auth reader -o dashboards.creds
  troyctl auth reader --http --json`,
		Args: exactArgs(0, "no arguments, such as troyctl auth reader --http"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if h.http {
				h.output, h.dataDir, h.asJSON = out, dataDir, asJSON
				return issueHTTPToken(a, &h, gateway.RoleReader, "")
			}
			return issue(a, dataDir, natsauth.RoleReader, "", out, asJSON)
		},
	}
	h.registerHTTP(cmd)
	authDirFlag(cmd, &dataDir)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the credential to this file (owner only) instead of stdout")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the credential's id, role, scope and file as JSON (needs -o)")
	return cmd
}

func issue(a *app, dataDir string, role natsauth.Role, scope, out string, asJSON bool) error {
	if asJSON && out == "" {
		return errors.New("--json: expected -o FILE too (the credential itself would be on stdout)")
	}
	s, err := natsauth.Open(natsauth.Dir(dataDir), false)
	if err != nil {
		return err
	}
	c, creds, err := s.Issue(role, scope, out)
	if err != nil {
		return err
	}
	switch {
	case asJSON:
		return writeJSONTo(a, c)
	case out == "":
		_, err = a.stdout.Write(creds)
		return err
	default:
		fmt.Fprintf(a.stdout, "%s credential %s written to %s\n", role, c.ID, out)
		return nil
	}
}

func writeJSONTo(a *app, v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newAuthListCmd(a *app) *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the credentials issued, revoked ones marked",
		Example: "  troyctl auth list\n  troyctl auth list --json --data-dir /var/lib/troy",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := natsauth.Open(natsauth.Dir(dataDir), false)
			if err != nil {
				return err
			}
			list, err := s.List()
			if err != nil {
				return err
			}
			if asJSON {
				if list == nil {
					list = []natsauth.Credential{}
				}
				return writeJSONTo(a, list)
			}
			fmt.Fprintf(a.stdout, "%-56s  %-7s  %-20s  %-20s  %s\n", "ID", "ROLE", "SCOPE", "ISSUED", "REVOKED")
			for _, c := range list {
				revoked := "-"
				if !c.Revoked.IsZero() {
					revoked = c.Revoked.Format(time.RFC3339)
				}
				scope := c.Scope
				if scope == "" {
					scope = "-"
				}
				fmt.Fprintf(a.stdout, "%-56s  %-7s  %-20s  %-20s  %s\n", c.ID, c.Role, scope, c.Issued.Format(time.RFC3339), revoked)
			}
			return nil
		},
	}
	authDirFlag(cmd, &dataDir)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

func newAuthRevokeCmd(a *app) *cobra.Command {
	var dataDir, url string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a credential: it can no longer connect, and its connections are closed",
		Long: `Revoke a credential by its id (troyctl auth list; a unique beginning is enough). The
account JWT is signed again with the revocation and the running serve is asked to load it
(over NATS, as admin, at the address serve wrote in DATA-DIR/auth/serve.url, or --nats):
the credential's connections are closed and it cannot connect again. A serve that is not
running loads it when it starts. For a cluster set up with troyctl auth nats-config, paste
the new configuration and reload the servers.`,
		Example: "  troyctl auth revoke UBX7Q2\n  troyctl auth revoke UBX7Q2 --data-dir /var/lib/troy --nats nats://troy:4222",
		Args:    oneArg("auth revoke", "the credential's id (troyctl auth list shows them)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := natsauth.Open(natsauth.Dir(dataDir), false)
			if err != nil {
				return err
			}
			c, err := s.Revoke(args[0])
			if err != nil {
				return err
			}
			if url == "" {
				raw, _ := os.ReadFile(s.Path(serveURLFile))
				url = strings.TrimSpace(string(raw))
			}
			reloaded := false
			if url != "" {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				defer cancel()
				if err := askReload(ctx, url, s.Path(natsauth.AdminCreds)); err != nil {
					fmt.Fprintf(a.stderr, "troyctl: revoked, but serve at %s did not load it (%v); it will when it starts\n", url, err)
				} else {
					reloaded = true
				}
			}
			if asJSON {
				return writeJSONTo(a, map[string]any{"credential": c, "serve_reloaded": reloaded})
			}
			fmt.Fprintf(a.stdout, "revoked %s (%s %s)\n", c.ID, c.Role, c.Scope)
			return nil
		},
	}
	authDirFlag(cmd, &dataDir)
	cmd.Flags().StringVar(&url, "nats", "", "the running serve's NATS (default: the address in DATA-DIR/auth/serve.url)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the revoked credential, and whether serve loaded it, as JSON")
	return cmd
}

// askReload asks a running serve, as admin, to load the account JWT again.
func askReload(ctx context.Context, url, creds string) error {
	opts, err := wire.Options("troyctl-auth", wire.Auth{CredsFile: creds})
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	_, err = wire.Request(ctx, nc, natsauth.ReloadSubject, nil)
	return err
}

func newAuthNATSConfigCmd(a *app) *cobra.Command {
	var dataDir, out string
	cmd := &cobra.Command{
		Use:   "nats-config",
		Short: "Print the accounts and permissions to configure an existing NATS cluster with",
		Long: `Print a nats-server configuration snippet (operator, system account and troy's account,
JetStream enabled, with a memory resolver) for an existing cluster, so that the
credentials issued here work there. Include it in every server's configuration (as
deploy/nats/cluster.conf includes auth/accounts.conf), then run
troyctl serve --nats URL --creds DATA-DIR/auth/service.creds. The keys are created in
DATA-DIR/auth when they are not there yet. The snippet holds public keys and JWTs only,
no seed.`,
		Example: `  troyctl auth nats-config --data-dir /var/lib/troy > /etc/nats/troy-accounts.conf
  troyctl auth nats-config --data-dir /var/lib/troy -o /etc/nats/auth/accounts.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := natsauth.Open(natsauth.Dir(dataDir), true)
			if err != nil {
				return err
			}
			conf, err := s.NATSConfig()
			if err != nil {
				return err
			}
			if out != "" {
				if err := os.WriteFile(out, []byte(conf), 0o644); err != nil {
					return fmt.Errorf("-o %s: %w", out, err)
				}
				return nil
			}
			_, err = fmt.Fprint(a.stdout, conf)
			return err
		},
	}
	authDirFlag(cmd, &dataDir)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the snippet to this file (readable by the NATS servers) instead of stdout")
	return cmd
}

// writeServeURL records where serve's NATS is, for troyctl auth revoke.
func writeServeURL(dataDir, url string) error {
	return os.WriteFile(filepath.Join(natsauth.Dir(dataDir), serveURLFile), []byte(url+"\n"), 0o600)
}
