package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/reporter"
)

// table is a titled grid of cells, printed aligned on a terminal or as CSV.
type table struct {
	title   string
	columns []string
	rows    [][]string
}

func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = cell(c)
	}
	t.rows = append(t.rows, row)
}

// cell renders a value for a table.
func cell(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'g', 4, 64)
	case time.Time:
		if v.Equal(v.Truncate(24 * time.Hour)) {
			return v.UTC().Format("2006-01-02")
		}
		return v.UTC().Format("2006-01-02 15:04")
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func (t *table) text(w io.Writer) {
	if t.title != "" {
		fmt.Fprintln(w, t.title)
	}
	if len(t.rows) == 0 {
		fmt.Fprintln(w, "  (none)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  "+strings.Join(t.columns, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, "  "+strings.Join(r, "\t"))
	}
	tw.Flush()
}

func (t *table) csv(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.columns); err != nil {
		return err
	}
	if err := cw.WriteAll(t.rows); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// output is the --json and --csv choice of the analytics commands.
type output struct{ json, csv bool }

func (o *output) register(cmd *cobra.Command, csvHelp string) {
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as JSON")
	cmd.Flags().BoolVar(&o.csv, "csv", false, csvHelp)
	cmd.MarkFlagsMutuallyExclusive("json", "csv")
}

// write prints v as JSON, the csv table as CSV, or the tables as text.
func (o *output) write(w io.Writer, v any, csvTable *table, tables ...*table) error {
	switch {
	case o.json:
		return reporter.EncodeJSON(w, v)
	case o.csv:
		return csvTable.csv(w)
	}
	for i, t := range tables {
		if i > 0 {
			fmt.Fprintln(w)
		}
		t.text(w)
	}
	return nil
}
