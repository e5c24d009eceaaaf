package main

import "github.com/spf13/cobra"

func newAuthCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Credentials and keys: gateway tokens for agents, readers and admins; the key that verifies reports",
		Long: `Issue the credentials clients present to troy, and show the key that verifies its reports.

With --http, a token for the HTTP gateway: its holder's role is an agent's (it writes that
agent's traces, checks its guard sessions and reads its reports), a reader's (it reads
reports) or an admin's (anything, storing policies included). The token is printed once;
only its SHA-256 is added to the tokens file that troyctl serve --http reads
(DATA-DIR/http-tokens, or --tokens FILE).

public-key prints the Ed25519 public key that verifies the reports this machine signs.`,
		Example: `  troyctl auth agent support-bot --http
  troyctl auth agent support-bot --http -o support-bot.token
  troyctl auth reader --http --json
  troyctl auth admin --http --tokens /etc/troy/http-tokens
  troyctl auth public-key --data-dir /var/lib/troy --json`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newAuthHTTPCmds(a)...)
	cmd.AddCommand(newAuthPublicKeyCmd(a))
	return cmd
}
