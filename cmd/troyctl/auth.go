package main

import "github.com/spf13/cobra"

func newAuthCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Keys and credentials: the public key that verifies signed reports",
		Long: `Keys and credentials of a troy deployment.

public-key prints the Ed25519 public key that verifies the reports this machine signs.`,
		Example: `  troyctl auth public-key
  troyctl auth public-key --data-dir /var/lib/troy --json`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newAuthPublicKeyCmd(a))
	return cmd
}
