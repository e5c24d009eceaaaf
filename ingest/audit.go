package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/troy-audit/troy/schemas"
	"github.com/troy-audit/troy/schemas/pyjson"
)

// LoadAudit reads an audit.json, written by troy or by the Python tool (same shape).
func LoadAudit(path string) (*schemas.AuditResult, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	a, err := DecodeAudit(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

// DecodeAudit parses an audit document; its trace is validated as a trace file is.
func DecodeAudit(data []byte) (*schemas.AuditResult, error) {
	var doc struct {
		Trace json.RawMessage `json:"trace"`
	}
	if err := pyjson.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not an audit document: %w", err)
	}
	if len(doc.Trace) == 0 || string(doc.Trace) == "null" {
		return nil, fmt.Errorf("trace: missing; expected an audit.json with a \"trace\" object")
	}
	t, err := DecodeTrace(doc.Trace)
	if err != nil {
		var pe *PathError
		if errors.As(err, &pe) {
			pe.Path, pe.Line, pe.Col = strings.TrimSuffix("trace."+pe.Path, "."), 0, 0 // lines are the trace's, not the file's
		}
		return nil, err
	}
	var a schemas.AuditResult
	if err := pyjson.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("audit fields: %w", err)
	}
	a.Trace = t
	a.Normalize()
	return &a, nil
}
