package warehouse

import (
	"context"
	"fmt"
	"reflect"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Rows is the result of a read-only query: the columns, and the rows' values in order.
type Rows struct {
	Columns   []string
	Values    [][]any
	Truncated bool // more rows were there than asked for
}

// ReadOnly runs one query with the server's readonly setting, so that nothing it asks can
// change the database, and returns at most maxRows rows.
func (s *Store) ReadOnly(ctx context.Context, query string, maxRows int) (*Rows, error) {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"readonly": 1}))
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	out := &Rows{Columns: rows.Columns()}
	types := rows.ColumnTypes()
	for rows.Next() {
		if len(out.Values) >= maxRows {
			out.Truncated = true
			break
		}
		dst := make([]any, len(types))
		for i, ct := range types {
			dst[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		vals := make([]any, len(dst))
		for i, v := range dst {
			vals[i] = reflect.ValueOf(v).Elem().Interface()
		}
		out.Values = append(out.Values, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return out, nil
}
