package warehouse

import (
	"fmt"
	"reflect"
	"time"
	"unsafe"
)

// columns is the data of a batch insert, column by column: names and slices of values.
// Inserting whole columns is several times faster than appending row by row.
type columns struct {
	names []string
	data  []any
}

// plan turns rows of type R, a struct whose every field has a `ch:"column"` tag, into
// the columns of an insert, in the order of the fields. It is made once per row type,
// from the tags, and holds nothing that changes.
type plan[R any] struct {
	names []string
	cols  []func([]R) any
}

// newPlan reads R's tags; the fields of an embedded struct without a tag are columns in
// their place. A field without a tag, or of a type no column is made of, is an error.
func newPlan[R any]() (*plan[R], error) {
	t := reflect.TypeFor[R]()
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("row type %s: not a struct", t)
	}
	p := &plan[R]{}
	return p, p.addFields(t, t, 0)
}

// addFields adds the columns of the fields of t, a struct at offset in the row type R.
func (p *plan[R]) addFields(row, t reflect.Type, offset uintptr) error {
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("ch")
		if name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			if err := p.addFields(row, f.Type, offset+f.Offset); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			return fmt.Errorf("row type %s, field %s: no ch tag naming its column", row, f.Name)
		}
		col, ok := columnOf[R](f.Type, offset+f.Offset)
		if !ok {
			return fmt.Errorf("row type %s, field %s: no column of type %s", row, f.Name, f.Type)
		}
		p.names = append(p.names, name)
		p.cols = append(p.cols, col)
	}
	return nil
}

// mustPlan is newPlan for the row types of this package, whose tags the tests check.
func mustPlan[R any]() *plan[R] {
	p, err := newPlan[R]()
	if err != nil {
		panic(err)
	}
	return p
}

// columnOf makes the function that gathers one field of every row into a slice of the
// field's type: the types ClickHouse columns are appended from.
func columnOf[R any](t reflect.Type, offset uintptr) (func([]R) any, bool) {
	switch t {
	case reflect.TypeFor[string]():
		return field[R, string](offset), true
	case reflect.TypeFor[[]string]():
		return field[R, []string](offset), true
	case reflect.TypeFor[uint8]():
		return field[R, uint8](offset), true
	case reflect.TypeFor[uint16]():
		return field[R, uint16](offset), true
	case reflect.TypeFor[uint32]():
		return field[R, uint32](offset), true
	case reflect.TypeFor[uint64]():
		return field[R, uint64](offset), true
	case reflect.TypeFor[time.Time]():
		return field[R, time.Time](offset), true
	}
	return nil, false
}

// field gathers the field of type T at offset of every row. It reads the field through
// its offset rather than through reflect, which costs a call per value: the sink turns
// every event into a row, and this is on its path.
func field[R, T any](offset uintptr) func([]R) any {
	return func(rows []R) any {
		out := make([]T, len(rows))
		for i := range rows {
			out[i] = *(*T)(unsafe.Add(unsafe.Pointer(&rows[i]), offset))
		}
		return out
	}
}

// columns turns rows into the columns of an insert.
func (p *plan[R]) columns(rows []R) columns {
	c := columns{names: p.names, data: make([]any, len(p.cols))}
	for i, col := range p.cols {
		c.data[i] = col(rows)
	}
	return c
}
