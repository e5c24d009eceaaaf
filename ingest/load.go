// Package ingest brings traces into troy: it reads trace files (.json, .jsonl, and their
// .gz forms, or every such file in a directory), OTLP JSON files of OpenTelemetry spans
// (through ingest/otel) and audit.json files (troy's or the Python tool's) and validates
// their traces, naming the file, the line and the JSON path of any problem.
//
// It imports schemas, ingest/otel and the standard library; it knows nothing of policies.
package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/troy-audit/troy/schemas"
)

// DefaultMaxSize is the default limit on a .json trace file, or on one line of a .jsonl
// file, after decompression.
const DefaultMaxSize = 64 << 20

// Options tune reading.
type Options struct {
	// MaxSize limits the bytes of one trace document: a .json file or one .jsonl line,
	// measured after decompression. Zero means DefaultMaxSize.
	MaxSize int64
}

func (o Options) maxSize() int64 {
	if o.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return o.MaxSize
}

// Error is a problem with one input file or one line of it.
type Error struct {
	File string
	Line int // 1-based line of a .jsonl record; 0 when the file is one document
	Err  error
}

func (e *Error) Error() string {
	var pe *PathError
	if e.Line == 0 && errors.As(e.Err, &pe) && pe.Line > 0 {
		inner := *pe
		inner.Line = 0
		return fmt.Sprintf("%s:%d:%d: %v", e.File, pe.Line, pe.Col, &inner)
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Record is one trace read from a file, or the reason one could not be read.
type Record struct {
	File  string
	Line  int // 1-based line within a .jsonl file; 0 for a .json file
	Trace *schemas.Trace
	Err   error // an *Error naming the file and line; nil when Trace is set
}

// Name is a short label for the record: the file's base name, plus the line for .jsonl.
func (r Record) Name() string {
	if r.Line > 0 {
		return fmt.Sprintf("%s:%d", filepath.Base(r.File), r.Line)
	}
	return filepath.Base(r.File)
}

// Extensions lists the file name endings that hold traces.
func Extensions() []string { return []string{".json", ".jsonl", ".json.gz", ".jsonl.gz"} }

// IsTraceFile reports whether the file name ends in one of Extensions.
func IsTraceFile(name string) bool {
	name = strings.ToLower(name)
	for _, ext := range Extensions() {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// Stem is the file's base name without its trace extension: runs/a.jsonl.gz gives "a".
func Stem(name string) string {
	base := filepath.Base(name)
	lower := strings.ToLower(base)
	for _, ext := range []string{".jsonl.gz", ".json.gz", ".jsonl", ".json"} {
		if strings.HasSuffix(lower, ext) {
			return base[:len(base)-len(ext)]
		}
	}
	return base
}

// Files lists the trace files directly inside dir, sorted by name. A symbolic link with
// a trace file's name is followed to a file; one to a directory is left out, as
// directories are (so no cycle of links is walked), and a broken one is listed, so that
// reading it says what is wrong.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if !IsTraceFile(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		switch {
		case e.Type().IsRegular():
		case e.Type()&fs.ModeSymlink != 0:
			if info, err := os.Stat(path); err == nil && !info.Mode().IsRegular() {
				continue
			}
		default:
			continue
		}
		files = append(files, path)
	}
	return files, nil
}

// LoadTrace reads a file that must hold exactly one trace.
func LoadTrace(ctx context.Context, path string, opts Options) (*schemas.Trace, error) {
	var traces []*schemas.Trace
	err := ReadFile(ctx, path, opts, func(r Record) error {
		if r.Err != nil {
			return r.Err
		}
		traces = append(traces, r.Trace)
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch len(traces) {
	case 0:
		return nil, &Error{File: path, Err: errors.New("no trace in file")}
	case 1:
		return traces[0], nil
	}
	return nil, &Error{File: path, Err: fmt.Errorf("holds %d traces; audit one at a time or use 'troyctl batch'", len(traces))}
}

// ReadFile reads every trace in one file and hands each to fn, in file order. A bad line of
// a .jsonl file is handed to fn as a Record with Err set, and reading goes on; a problem
// with the file as a whole is returned as an *Error. If fn returns an error, reading stops
// and ReadFile returns it.
func ReadFile(ctx context.Context, path string, opts Options, fn func(Record) error) error {
	return ReadRaw(ctx, path, opts, func(r Raw) error { return fn(r.Decode()) })
}

// Raw is one undecoded trace document: a whole .json file or one .jsonl line. Decoding is
// left to the caller so that it can run in parallel.
type Raw struct {
	File string
	Line int // 1-based line within a .jsonl file (an OTLP file's: of the trace's first span); 0 for a .json file
	Data []byte
	Err  error // set when the document could not be read (for example, over the size limit)
	// trace is a trace already made from another format (OTLP), in place of Data.
	trace *schemas.Trace
}

// Decode parses and validates the document.
func (r Raw) Decode() Record {
	rec := Record{File: r.File, Line: r.Line}
	if r.Err != nil {
		rec.Err = r.Err
		return rec
	}
	if r.trace != nil {
		rec.Trace = r.trace
		return rec
	}
	t, err := DecodeTrace(r.Data)
	if err != nil {
		var pe *PathError
		if r.Line > 0 && errors.As(err, &pe) {
			pe.Line, pe.Col = 0, 0 // the record's line is named by the Error
		}
		rec.Err = &Error{File: r.File, Line: r.Line, Err: err}
		return rec
	}
	rec.Trace = t
	return rec
}

// ReadRaw hands each trace document of a file to fn without decoding it. Blank lines of a
// .jsonl file are skipped.
func ReadRaw(ctx context.Context, path string, opts Options, fn func(Raw) error) error {
	f, err := os.Open(path)
	if err != nil {
		return &Error{File: path, Err: trimPathErr(err)}
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return &Error{File: path, Err: err}
	}
	if info.IsDir() {
		return &Error{File: path, Err: errors.New("is a directory; use 'troyctl batch' for directories")}
	}
	lower := strings.ToLower(path)
	var r io.Reader = f
	if strings.HasSuffix(lower, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return &Error{File: path, Err: fmt.Errorf("not a gzip file: %w", err)}
		}
		defer zr.Close()
		r = zr
		lower = strings.TrimSuffix(lower, ".gz")
	} else if !strings.HasSuffix(lower, ".jsonl") && info.Size() > opts.maxSize() {
		return &Error{File: path, Err: tooLarge(info.Size(), opts.maxSize())}
	}
	br := bufio.NewReaderSize(r, otlpPeek)
	r = br
	if isOTLP(br) {
		return readOTLP(ctx, path, br, opts.maxSize(), fn)
	}
	if strings.HasSuffix(lower, ".jsonl") {
		return readLines(ctx, path, r, opts.maxSize(), fn)
	}
	data, err := io.ReadAll(io.LimitReader(r, opts.maxSize()+1))
	if err != nil {
		return &Error{File: path, Err: err}
	}
	if int64(len(data)) > opts.maxSize() {
		return &Error{File: path, Err: tooLarge(-1, opts.maxSize())}
	}
	return fn(Raw{File: path, Data: data})
}

func readLines(ctx context.Context, path string, r io.Reader, max int64, fn func(Raw) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, long, err := readLine(br, max)
		if err != nil && !errors.Is(err, io.EOF) {
			return &Error{File: path, Line: line, Err: err}
		}
		var raw Raw
		switch {
		case long:
			raw = Raw{File: path, Line: line, Err: &Error{File: path, Line: line, Err: tooLarge(-1, max)}}
		case len(bytes.TrimSpace(data)) == 0:
			if errors.Is(err, io.EOF) {
				return nil
			}
			continue
		default:
			raw = Raw{File: path, Line: line, Data: data}
		}
		if ferr := fn(raw); ferr != nil {
			return ferr
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

// readLine reads one line without its newline. A line longer than max is consumed and
// reported with long set, so that reading can go on with the next line.
func readLine(br *bufio.Reader, max int64) (line []byte, long bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			if int64(len(line)+len(chunk)) > max+1 { // +1 for the newline itself
				long, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		line = bytesTrimNewline(line)
		return line, long, err
	}
}

func bytesTrimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

func tooLarge(size, max int64) error {
	if size >= 0 {
		return fmt.Errorf("file is %s, over the %s limit (raise it with --max-size)", humanBytes(size), humanBytes(max))
	}
	return fmt.Errorf("trace is over the %s limit (raise it with --max-size)", humanBytes(max))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// trimPathErr drops the operation and path from an *os.PathError, since Error names the file.
func trimPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
