package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/internal/warehouse"
)

// chFlags is the --clickhouse flag that every command using ClickHouse shares.
type chFlags struct{ dsn string }

func (f *chFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dsn, "clickhouse", "", "ClickHouse DSN, such as clickhouse://user:pass@host:9000/troy")
}

// value is the DSN from the flag (or its variable, applyEnv); empty when neither gives one.
func (f *chFlags) value() string { return f.dsn }

// open connects to an existing troy database.
func (f *chFlags) open(ctx context.Context) (*warehouse.Store, error) {
	dsn := f.value()
	if dsn == "" {
		return nil, fmt.Errorf("no ClickHouse: pass --clickhouse clickhouse://HOST:9000/troy or set %s", warehouse.EnvDSN)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return warehouse.Open(ctx, dsn)
}

// migrateStore creates or upgrades the schema and connects.
func migrateStore(ctx context.Context, dsn string) (*warehouse.Store, []warehouse.MigrationStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return warehouse.Migrate(ctx, dsn)
}
