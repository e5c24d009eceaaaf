package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// PathError is a problem at one place inside a trace document.
type PathError struct {
	Path string // JSON path such as steps[3].type; empty for the document itself
	Line int    // 1-based line within the document, when known
	Col  int    // 1-based column within the document, when known
	Msg  string
}

func (e *PathError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d, column %d: ", e.Line, e.Col)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// DecodeTrace parses and validates one trace document. Errors are *PathError values that
// name the JSON path and what was expected. Numbers are read as Python's json reads them
// (see pyjson): exact integers of any length, 1e999999 as infinity, NaN and Infinity.
func DecodeTrace(data []byte) (*schemas.Trace, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a byte-order mark some editors write
	if !utf8.Valid(data) {
		off := invalidUTF8Offset(data)
		line, col := position(data, off)
		return nil, &PathError{Line: line, Col: col, Msg: fmt.Sprintf("invalid UTF-8 (byte 0x%02x at offset %d)", data[off], off)}
	}
	var doc any
	if err := pyjson.Unmarshal(data, &doc); err != nil {
		return nil, decodeError(data, err)
	}
	return traceFromJSON(doc)
}

func decodeError(data []byte, err error) error {
	var pe *pyjson.PathError
	if errors.As(err, &pe) {
		return &PathError{Path: pe.Path, Msg: pe.Err.Error()}
	}
	var te *pyjson.TrailingDataError
	if errors.As(err, &te) {
		line, col := position(data, int(te.Offset))
		return &PathError{Line: line, Col: col, Msg: "unexpected data after the trace object (one trace per .json file; use .jsonl for many)"}
	}
	if errors.Is(err, io.EOF) {
		return &PathError{Msg: "empty document: expected a trace object"}
	}
	off := len(data)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = int(se.Offset) - 1 // the offset is just past the offending byte
	}
	line, col := position(data, off)
	msg := err.Error()
	if errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "unexpected end of JSON input"
	}
	return &PathError{Line: line, Col: col, Msg: "invalid JSON: " + msg}
}

// position turns a byte offset into a 1-based line and column (in characters).
func position(data []byte, off int) (line, col int) {
	if off > len(data) {
		off = len(data)
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	start := bytes.LastIndexByte(before, '\n') + 1
	col = utf8.RuneCount(before[start:]) + 1
	return line, col
}

func invalidUTF8Offset(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(data)
}

func traceFromJSON(doc any) (*schemas.Trace, error) {
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, &PathError{Msg: "expected a trace object, got " + describe(doc)}
	}
	t := &schemas.Trace{}
	var err error
	if t.TraceID, err = requiredID(obj, "", "trace_id", true); err != nil {
		return nil, err
	}
	if t.AgentName, err = requiredID(obj, "", "agent_name", false); err != nil {
		return nil, err
	}
	if t.Metadata, err = optionalObject(obj, "", "metadata"); err != nil {
		return nil, err
	}
	raw, present := obj["steps"]
	if !present {
		return nil, &PathError{Path: "steps", Msg: "required field is missing"}
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, &PathError{Path: "steps", Msg: "expected an array of steps, got " + describe(raw)}
	}
	if len(list) == 0 {
		return nil, &PathError{Path: "steps", Msg: "expected at least one step, got none"}
	}
	// A step_id used twice is kept twice, as the Python tool keeps it: every step is
	// evaluated in order, and violations name the step_id they happened at.
	t.Steps = make([]*schemas.Step, len(list))
	for i, item := range list {
		s, err := stepFromJSON(item, i)
		if err != nil {
			return nil, err
		}
		t.Steps[i] = s
	}
	return t, nil
}

func stepFromJSON(item any, i int) (*schemas.Step, error) {
	at := fmt.Sprintf("steps[%d]", i)
	obj, ok := item.(map[string]any)
	if !ok {
		return nil, &PathError{Path: at, Msg: "expected a step object, got " + describe(item)}
	}
	s := &schemas.Step{}
	var err error
	if s.StepID, err = requiredID(obj, at, "step_id", true); err != nil {
		return nil, err
	}
	if s.Type, err = requiredString(obj, at, "type", false); err != nil {
		return nil, err
	}
	if !schemas.ValidStepType(s.Type) {
		return nil, &PathError{Path: at + ".type", Msg: fmt.Sprintf("%q is not one of %s", s.Type, strings.Join(schemas.StepTypes(), ", "))}
	}
	if s.Description, err = requiredString(obj, at, "description", false); err != nil {
		return nil, err
	}
	if s.Input, err = optionalObject(obj, at, "input"); err != nil {
		return nil, err
	}
	if s.Output, err = optionalObject(obj, at, "output"); err != nil {
		return nil, err
	}
	if s.Metadata, err = optionalObject(obj, at, "metadata"); err != nil {
		return nil, err
	}
	if s.Timestamp, err = optionalString(obj, at, "timestamp"); err != nil {
		return nil, err
	}
	if s.ParentStepID, err = optionalString(obj, at, "parent_step_id"); err != nil {
		return nil, err
	}
	if s.ParentStepID != nil {
		if err := schemas.CheckID(*s.ParentStepID); err != nil {
			return nil, &PathError{Path: join(at, "parent_step_id"), Msg: err.Error()}
		}
	}
	return s, nil
}

// requiredID is a required string that is an id (schemas.CheckID).
func requiredID(obj map[string]any, at, key string, nonEmpty bool) (string, error) {
	s, err := requiredString(obj, at, key, nonEmpty)
	if err != nil {
		return "", err
	}
	if err := schemas.CheckID(s); err != nil {
		return "", &PathError{Path: join(at, key), Msg: err.Error()}
	}
	return s, nil
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

func requiredString(obj map[string]any, at, key string, nonEmpty bool) (string, error) {
	v, ok := obj[key]
	if !ok {
		return "", &PathError{Path: join(at, key), Msg: "required field is missing"}
	}
	s, ok := v.(string)
	if !ok {
		return "", &PathError{Path: join(at, key), Msg: "expected a string, got " + describe(v)}
	}
	if nonEmpty && s == "" {
		return "", &PathError{Path: join(at, key), Msg: "expected a non-empty string"}
	}
	return s, nil
}

func optionalString(obj map[string]any, at, key string) (*string, error) {
	v, ok := obj[key]
	if !ok || v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, &PathError{Path: join(at, key), Msg: "expected a string or null, got " + describe(v)}
	}
	return &s, nil
}

func optionalObject(obj map[string]any, at, key string) (map[string]any, error) {
	v, ok := obj[key]
	if !ok || v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &PathError{Path: join(at, key), Msg: "expected an object, got " + describe(v)}
	}
	return m, nil
}

// describe names a decoded JSON value's kind for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if r := []rune(x); len(r) > 40 {
			x = string(r[:37]) + "..."
		}
		return "string " + strconv.Quote(x)
	case int, float64, *big.Int:
		return fmt.Sprintf("number %v", x)
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
