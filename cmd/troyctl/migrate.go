package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/reporter"
)

func newMigrateCmd(a *app) *cobra.Command {
	var (
		ch     chFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade troy's tables in ClickHouse",
		Long: `Create the database named in the DSN (troy by default) and apply the schema
migrations it lacks, in order, recording each in schema_migrations. Running it again
changes nothing. Migrations that need a newer ClickHouse than the server's are skipped
and run after the server is upgraded. troyctl serve --clickhouse migrates at start too.`,
		Example: `  troyctl migrate --clickhouse clickhouse://127.0.0.1:9000/troy
  TROY_CLICKHOUSE=clickhouse://ch:9000/troy troyctl migrate --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dsn := ch.value()
			if dsn == "" {
				_, err := ch.open(cmd.Context())
				return err
			}
			store, st, err := migrateStore(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			defer store.Close()
			if asJSON {
				return reporter.EncodeJSON(a.stdout, map[string]any{"database": store.Database(), "server": store.ServerVersion().String(), "migrations": st})
			}
			fmt.Fprintf(a.stdout, "ClickHouse %s at %s, database %s:\n", store.ServerVersion(), store.Addr(), store.Database())
			for _, m := range st {
				line := fmt.Sprintf("  %-8s %s", m.State, m.Name)
				if m.Note != "" {
					line += " (" + m.Note + ")"
				}
				fmt.Fprintln(a.stdout, line)
			}
			return nil
		},
	}
	ch.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
