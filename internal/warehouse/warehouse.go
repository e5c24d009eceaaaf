// Package warehouse keeps troy's results in ClickHouse: the connection, the schema
// migrations, and the sink that turns pipeline events into rows.
//
// The SQL here runs on every ClickHouse from 18.16 to current releases: inserts go through
// batches with explicit column lists, values are bound with ?, and everything newer is
// behind a version check.
package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultDatabase is the database troy uses when the DSN names none.
const DefaultDatabase = "troy"

// EnvDSN is the environment variable that holds the DSN when no flag gives one.
const EnvDSN = "TROY_CLICKHOUSE"

// Version is a ClickHouse server version.
type Version struct{ Major, Minor int }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// AtLeast reports whether v is o or newer.
func (v Version) AtLeast(o Version) bool {
	return v.Major > o.Major || v.Major == o.Major && v.Minor >= o.Minor
}

// Store is a connection to troy's database.
type Store struct {
	conn    driver.Conn
	db      string
	addr    string
	version Version
}

// Options parses a DSN such as clickhouse://user:password@host:9000/troy (the scheme may be
// left out). The database defaults to troy.
func Options(dsn string) (*clickhouse.Options, error) {
	if dsn == "" {
		return nil, fmt.Errorf("no ClickHouse DSN: pass --clickhouse clickhouse://HOST:9000/troy or set %s", EnvDSN)
	}
	if !strings.Contains(dsn, "://") {
		dsn = "clickhouse://" + dsn
	}
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("ClickHouse DSN %q: %w", redactDSN(dsn), err)
	}
	if opts.Auth.Database == "" {
		opts.Auth.Database = DefaultDatabase
	}
	if opts.DialTimeout == 0 || opts.DialTimeout == 30*time.Second {
		opts.DialTimeout = 5 * time.Second
	}
	// The client warns that old servers are unsupported; what troy sends works on them.
	opts.Logger = slog.New(slog.DiscardHandler)
	if opts.Compression == nil { // the DSN's compress=… wins
		opts.Compression = &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
	}
	return opts, nil
}

// redactDSN hides a DSN's password in messages.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	cred := dsn[scheme+3 : at]
	if i := strings.Index(cred, ":"); i >= 0 {
		return dsn[:scheme+3] + cred[:i] + ":***" + dsn[at:]
	}
	return dsn
}

// Open connects to troy's database; it must exist (Migrate creates it).
func Open(ctx context.Context, dsn string) (*Store, error) {
	opts, err := Options(dsn)
	if err != nil {
		return nil, err
	}
	return open(ctx, opts)
}

func open(ctx context.Context, opts *clickhouse.Options) (*Store, error) {
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("ClickHouse at %s: %w", strings.Join(opts.Addr, ","), err)
	}
	s := &Store{conn: conn, db: opts.Auth.Database, addr: strings.Join(opts.Addr, ",")}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		if code(err) == 81 {
			return nil, fmt.Errorf("ClickHouse at %s has no database %q: run troyctl migrate", s.addr, s.db)
		}
		return nil, fmt.Errorf("ClickHouse at %s: %w", s.addr, err)
	}
	sv, err := conn.ServerVersion()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ClickHouse at %s: server version: %w", s.addr, err)
	}
	s.version = Version{int(sv.Version.Major), int(sv.Version.Minor)}
	return s, nil
}

// Close closes the connection.
func (s *Store) Close() error { return s.conn.Close() }

// Conn is the underlying connection, for queries.
func (s *Store) Conn() driver.Conn { return s.conn }

// Database is the database's name.
func (s *Store) Database() string { return s.db }

// Addr is the server's address.
func (s *Store) Addr() string { return s.addr }

// ServerVersion is the server's version.
func (s *Store) ServerVersion() Version { return s.version }

// code is the ClickHouse error code of err, or 0.
func code(err error) int32 {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return ex.Code
	}
	return 0
}

// insert stores one batch into table, column by column.
func (s *Store) insert(ctx context.Context, table string, c columns) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+strings.Join(c.names, ", ")+")")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	defer b.Abort()
	// An insert whose header names no columns stores nothing and says nothing on old
	// servers; make sure the server took every column.
	if n := len(b.Columns()); n != len(c.names) {
		return fmt.Errorf("insert into %s: the server took %d of %d columns", table, n, len(c.names))
	}
	for i, slice := range c.data {
		if err := b.Column(i).Append(slice); err != nil {
			return fmt.Errorf("insert into %s, column %s: %w", table, c.names[i], err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}
