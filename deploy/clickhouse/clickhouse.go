// Package clickhouse holds troy's ClickHouse schema: numbered SQL migrations, embedded in
// the binary and applied in order by `troyctl migrate` and `troyctl serve --clickhouse`.
//
// A migration is NNNN_name.sql: statements separated by a semicolon at the end of a line.
// A first-line comment "-- requires: MAJOR.MINOR" gates it on the server's version; an
// older server skips it until it is upgraded.
package clickhouse

import "embed"

// Files are the migrations.
//
//go:embed *.sql
var Files embed.FS
