package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/troy-audit/troy/ingest/otel"
)

// otlpPeek is how much of a file's beginning tells OTLP JSON from a troy trace.
const otlpPeek = 64 << 10

// isOTLP reports whether the file read by br holds OTLP JSON, without consuming it.
func isOTLP(br *bufio.Reader) bool {
	peek, _ := br.Peek(otlpPeek)
	return otel.LooksLikeJSON(peek)
}

// readOTLP reads an OTLP JSON file (one ExportTraceServiceRequest per line, as the
// collector's file exporter writes, or one document) and hands fn one troy trace per trace
// id, in the order their first spans came. A trace's spans may be on any lines, so the
// file is read whole: its limit is the limit of one document. A bad line is handed to fn
// and reading goes on; a trace whose spans could not all be read fails as a whole.
func readOTLP(ctx context.Context, path string, r io.Reader, limit int64, fn func(Raw) error) error {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return &Error{File: path, Err: err}
	}
	if int64(len(data)) > limit {
		return &Error{File: path, Err: fmt.Errorf("OTLP file is over the %s limit (an OTLP file is read whole; raise it with --max-size)", humanBytes(limit))}
	}
	asm := otel.NewAssembler(otel.Limits{MaxTraceBytes: limit, MaxPendingBytes: math.MaxInt64})
	lines := []int{0} // lines[seq] is the line of the seq-th document added
	add := func(doc []byte, line int) error {
		td, err := otel.DecodeJSON(doc)
		if err == nil {
			lines = append(lines, line)
			err = asm.Add(td, time.Time{}).Err
		}
		if err != nil {
			if line == 0 {
				return &Error{File: path, Err: err}
			}
			return fn(Raw{File: path, Line: line, Err: &Error{File: path, Line: line, Err: err}})
		}
		return nil
	}
	if first, _, _ := bytes.Cut(bytes.TrimLeft(data, " \t\r\n"), []byte("\n")); json.Valid(first) {
		for i, doc := range bytes.Split(data, []byte("\n")) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			if err := add(doc, i+1); err != nil {
				return err
			}
		}
	} else if err := add(data, 0); err != nil {
		return err
	}
	traces := asm.Flush()
	if st := asm.Stats(); len(traces) == 0 && st.Rejected == 0 && len(lines) > 1 {
		// Nothing to audit and nothing wrong: say why rather than read nothing.
		return &Error{File: path, Err: fmt.Errorf("no trace with steps: none of its %d spans follows a GenAI convention troy reads (docs/OTEL.md)", st.Spans)}
	}
	for _, t := range traces {
		line := max(lines[t.Seq], 1)
		raw := Raw{File: path, Line: line, trace: t.Trace}
		if t.Err != nil {
			raw.Err = &Error{File: path, Line: line, Err: t.Err}
		}
		if err := fn(raw); err != nil {
			return err
		}
	}
	return nil
}
