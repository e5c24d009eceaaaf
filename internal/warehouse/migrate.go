package warehouse

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	chschema "github.com/troy-audit/troy/deploy/clickhouse"
)

// Migration is one numbered SQL file of the schema.
type Migration struct {
	Number     int
	Name       string   // file name
	Requires   *Version // oldest server it runs on; nil for any
	Statements []string
	Checksum   string // sha256 of the file
}

var migrationName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// Migrations returns the embedded migrations in order.
func Migrations() ([]Migration, error) { return ParseMigrations(chschema.Files) }

// ParseMigrations reads NNNN_name.sql files from fsys.
func ParseMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, name := range names {
		m := migrationName.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("migration %s: the name must be NNNN_name.sql", name)
		}
		raw, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		mig, err := parseMigration(name, string(raw))
		if err != nil {
			return nil, err
		}
		mig.Number, _ = strconv.Atoi(m[1])
		if len(out) > 0 && out[len(out)-1].Number == mig.Number {
			return nil, fmt.Errorf("migrations %s and %s share number %d", out[len(out)-1].Name, name, mig.Number)
		}
		out = append(out, mig)
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Number - b.Number })
	return out, nil
}

var requiresLine = regexp.MustCompile(`^--\s*requires:\s*(\d+)\.(\d+)\s*$`)

// parseMigration splits a file into statements: a statement ends with a semicolon at the end
// of a line; lines starting with -- are comments.
func parseMigration(name, text string) (Migration, error) {
	sum := sha256.Sum256([]byte(text))
	mig := Migration{Name: path.Base(name), Checksum: hex.EncodeToString(sum[:])}
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if m := requiresLine.FindStringSubmatch(l); m != nil && line == 1 {
			major, _ := strconv.Atoi(m[1])
			minor, _ := strconv.Atoi(m[2])
			mig.Requires = &Version{major, minor}
			continue
		}
		if l == "" || strings.HasPrefix(l, "--") {
			continue
		}
		cur.WriteString(sc.Text())
		cur.WriteByte('\n')
		if strings.HasSuffix(l, ";") {
			stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			mig.Statements = append(mig.Statements, stmt)
			cur.Reset()
		}
	}
	if rest := strings.TrimSpace(cur.String()); rest != "" {
		return mig, fmt.Errorf("migration %s, line %d: the last statement does not end with ';'", name, line)
	}
	if len(mig.Statements) == 0 {
		return mig, fmt.Errorf("migration %s: no statements", name)
	}
	return mig, nil
}

// MigrationStatus says what Migrate did with one migration.
type MigrationStatus struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	// State is "applied" (now), "present" (earlier) or "skipped" (the server is too old).
	State string `json:"state"`
	Note  string `json:"note,omitempty"`
}

// MigrationsTable records applied migrations; created before any migration runs.
const MigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    number UInt32,
    name String,
    checksum String,
    applied_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(applied_at)
ORDER BY number`

// Migrate creates the DSN's database if needed and applies the migrations it lacks, in
// order, recording each. It is safe to run twice, and from two processes at once: every
// statement is idempotent.
func Migrate(ctx context.Context, dsn string) (*Store, []MigrationStatus, error) {
	opts, err := Options(dsn)
	if err != nil {
		return nil, nil, err
	}
	db := opts.Auth.Database
	admin := *opts
	admin.Auth.Database = "default"
	a, err := open(ctx, &admin)
	if err != nil {
		return nil, nil, err
	}
	err = a.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(db))
	a.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("create database %s: %w", db, err)
	}
	s, err := open(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	migs, err := Migrations()
	if err == nil {
		var st []MigrationStatus
		if st, err = s.Apply(ctx, migs); err == nil {
			return s, st, nil
		}
	}
	s.Close()
	return nil, nil, err
}

// Apply applies the migrations the database lacks.
func (s *Store) Apply(ctx context.Context, migs []Migration) ([]MigrationStatus, error) {
	if err := s.conn.Exec(ctx, MigrationsTable); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	done := map[int]string{}
	rows, err := s.conn.Query(ctx, "SELECT number, checksum FROM schema_migrations FINAL")
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var n uint32
		var sum string
		if err := rows.Scan(&n, &sum); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		done[int(n)] = sum
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	var out []MigrationStatus
	for _, m := range migs {
		st := MigrationStatus{Number: m.Number, Name: m.Name}
		if sum, ok := done[m.Number]; ok {
			st.State = "present"
			if sum != m.Checksum {
				st.Note = "the file changed after it was applied; it is not applied again"
			}
			out = append(out, st)
			continue
		}
		if m.Requires != nil && !s.version.AtLeast(*m.Requires) {
			st.State, st.Note = "skipped", fmt.Sprintf("needs ClickHouse %s or newer (server is %s); runs after an upgrade", m.Requires, s.version)
			out = append(out, st)
			continue
		}
		for i, stmt := range m.Statements {
			if err := s.conn.Exec(ctx, stmt); err != nil {
				return out, fmt.Errorf("migration %s, statement %d: %w", m.Name, i+1, err)
			}
		}
		rec := migrationColumns.columns([]migrationRow{{uint32(m.Number), m.Name, m.Checksum, time.Now().UTC()}})
		if err := s.insert(ctx, "schema_migrations", rec); err != nil {
			return out, fmt.Errorf("record migration %s: %w", m.Name, err)
		}
		st.State = "applied"
		out = append(out, st)
	}
	return out, nil
}

// migrationRow is a row of schema_migrations: a migration applied.
type migrationRow struct {
	number    uint32    `ch:"number"`
	name      string    `ch:"name"`
	checksum  string    `ch:"checksum"`
	appliedAt time.Time `ch:"applied_at"`
}

var migrationColumns = mustPlan[migrationRow]()

// quoteIdent quotes a database or table name.
func quoteIdent(name string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(name, `\`, `\\`), "`", "\\`") + "`"
}
