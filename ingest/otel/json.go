package otel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// LooksLikeJSON reports whether a document's beginning is OTLP JSON: an object whose first
// key is resourceSpans (what an ExportTraceServiceRequest holds, and the collector's file
// exporter writes). A troy trace begins with its own keys.
func LooksLikeJSON(prefix []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(prefix, []byte("\xef\xbb\xbf"))))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	key, err := dec.Token()
	return err == nil && (key == "resourceSpans" || key == "resource_spans")
}

// DecodeJSON decodes one ExportTraceServiceRequest in OTLP JSON with pdata. The error is
// one line: the line and column of a syntax error, or what pdata refused.
func DecodeJSON(data []byte) (ptrace.Traces, error) {
	if !utf8.Valid(data) {
		return ptrace.Traces{}, errors.New("invalid UTF-8")
	}
	if !json.Valid(data) {
		var v json.RawMessage
		err := json.Unmarshal(data, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := position(data, int(se.Offset)-1)
			if !bytes.Contains(data, []byte("\n")) { // one line of a file: its reader names the line
				return ptrace.Traces{}, fmt.Errorf("column %d: invalid JSON: %v", col, se)
			}
			return ptrace.Traces{}, fmt.Errorf("line %d, column %d: invalid JSON: %v", line, col, se)
		}
		return ptrace.Traces{}, fmt.Errorf("invalid JSON: %v", err)
	}
	u := ptrace.JSONUnmarshaler{}
	td, err := u.UnmarshalTraces(data)
	if err != nil {
		// pdata's message quotes the input around the error, which may span lines.
		msg, _, _ := strings.Cut(err.Error(), ", error found in")
		return ptrace.Traces{}, fmt.Errorf("not an OTLP trace export: %s", strings.Join(strings.Fields(msg), " "))
	}
	return td, nil
}

// position turns a byte offset into a 1-based line and column (in characters).
func position(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	start := bytes.LastIndexByte(before, '\n') + 1
	return line, utf8.RuneCount(before[start:]) + 1
}

// DecodeProto decodes one ExportTraceServiceRequest in OTLP's protobuf encoding with
// pdata, as OTLP/HTTP and OTLP/gRPC carry it.
func DecodeProto(data []byte) (ptrace.Traces, error) {
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(data); err != nil {
		return ptrace.Traces{}, fmt.Errorf("not an OTLP trace export: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	return req.Traces(), nil
}
