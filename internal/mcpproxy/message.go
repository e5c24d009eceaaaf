package mcpproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// message is what the proxy reads of one JSON-RPC message; the message itself is relayed
// as the bytes it came in.
type message struct {
	batch  bool            // a JSON array: relayed unless it holds a tools/call
	method string          // empty for a response
	id     json.RawMessage // nil for a notification
	params json.RawMessage
	result json.RawMessage
	err    json.RawMessage
	calls  int // in a batch: how many of its elements are tools/call requests
}

// isRequest says the message is a request (a method and an id).
func (m message) isRequest() bool { return m.method != "" && m.id != nil }

// isResponse says the message answers a request (an id, no method).
func (m message) isResponse() bool { return m.method == "" && m.id != nil && !m.batch }

// idKey is the id as a key of the table of requests in flight.
func (m message) idKey() string { return idKey(m.id) }

// idKey is an id by its value, not its spelling: a peer writes back the id it decoded,
// so "\u0037" comes back as "7" and 7.0 as 7, and the answer must still find its request.
// A string and a number stay apart.
func idKey(id json.RawMessage) string {
	var v any
	d := json.NewDecoder(bytes.NewReader(id))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return "?" + string(id)
	}
	switch v := v.(type) {
	case string:
		return "s" + v
	case json.Number:
		if f, ok := new(big.Float).SetString(v.String()); ok {
			return "n" + f.Text('g', -1)
		}
		return "n" + v.String()
	}
	return "?" + string(id)
}

// maxIDBytes bounds a request's id: ids are counters and short strings, and each is kept
// until its answer.
const maxIDBytes = 256

// decode reads what the proxy needs of one line. Keys are matched exactly, and of keys
// given twice the last counts, as JavaScript's and Python's JSON parsers do, so that the
// proxy reads a message as the server will: encoding/json's case-insensitive struct
// matching would let {"method":"tools/call","Method":"x"} pass as something else.
func decode(line []byte) (message, error) {
	line = bytes.TrimSpace(line)
	if len(line) > 0 && line[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(line, &elems); err != nil {
			return message{}, fmt.Errorf("not a JSON-RPC message: %w", err)
		}
		m := message{batch: true}
		for i, e := range elems {
			em, err := decodeObject(e)
			if err != nil {
				return message{}, fmt.Errorf("batch element %d: %w", i, err)
			}
			if em.method == methodCall {
				m.calls++
			}
		}
		return m, nil
	}
	return decodeObject(line)
}

func decodeObject(data []byte) (message, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return message{}, fmt.Errorf("not a JSON-RPC message: %w", err)
	}
	if fields == nil {
		return message{}, fmt.Errorf("not a JSON-RPC message: expected an object, got null")
	}
	// The id first: a message refused for what else it holds is answered with its id.
	var id json.RawMessage
	if raw, ok := fields["id"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if len(raw) > maxIDBytes {
			return message{}, fmt.Errorf("id: longer than %d bytes", maxIDBytes)
		}
		id = raw
	}
	if err := exactKeys(fields, "jsonrpc", "id", "method", "params", "result", "error"); err != nil {
		return message{id: id}, err
	}
	m := message{id: id, params: fields["params"], result: fields["result"], err: fields["error"]}
	if raw, ok := fields["method"]; ok {
		if err := json.Unmarshal(raw, &m.method); err != nil {
			return message{id: id}, fmt.Errorf("method: expected a string, got %s", shortRaw(raw))
		}
		if m.method == "" {
			return message{id: id}, fmt.Errorf("method: expected a method name, got an empty string")
		}
	}
	return m, nil
}

// exactKeys refuses a key that is another spelling of a key the proxy reads ("Method",
// "paramſ"): a server whose JSON decoder matches keys case-insensitively, as Go's
// encoding/json does, would read it as that key, and the guard would not.
func exactKeys(fields map[string]json.RawMessage, known ...string) error {
	for k := range fields {
		for _, want := range known {
			if k != want && strings.EqualFold(k, want) {
				return fmt.Errorf("key %q: another spelling of %q; refused", k, want)
			}
		}
	}
	return nil
}

// callParams are the parameters of a tools/call request, read as decode reads a message.
type callParams struct {
	name string
	args map[string]any
}

func decodeCall(params json.RawMessage) (callParams, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(params, &fields); err != nil || fields == nil {
		return callParams{}, fmt.Errorf("tools/call params: expected an object with name and arguments, got %s", shortRaw(params))
	}
	if err := exactKeys(fields, "name", "arguments"); err != nil {
		return callParams{}, fmt.Errorf("tools/call params: %w", err)
	}
	var p callParams
	if err := json.Unmarshal(fields["name"], &p.name); err != nil || p.name == "" {
		return callParams{}, fmt.Errorf("tools/call params.name: expected a tool's name, got %s", shortRaw(fields["name"]))
	}
	if raw, ok := fields["arguments"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &p.args); err != nil {
			return callParams{}, fmt.Errorf("tools/call params.arguments: expected an object, got %s", shortRaw(raw))
		}
	}
	return p, nil
}

// clientName is the clientInfo.name of an initialize request's params, or "".
func clientName(params json.RawMessage) string {
	var p struct {
		ClientInfo struct {
			Name string `json:"name"`
		} `json:"clientInfo"`
	}
	if json.Unmarshal(params, &p) != nil {
		return ""
	}
	return p.ClientInfo.Name
}

// toolsOf reads the tools of a tools/list result: each one's name, description and input
// schema, in the order given.
func toolsOf(result json.RawMessage) ([]any, error) {
	var r struct {
		Tools []struct {
			Name        string         `json:"name"`
			Description string         `json:"description"`
			InputSchema map[string]any `json:"inputSchema"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(result, &r); err != nil {
		return nil, fmt.Errorf("tools/list result: %w", err)
	}
	tools := make([]any, 0, len(r.Tools))
	for _, t := range r.Tools {
		tools = append(tools, map[string]any{"name": t.Name, "description": t.Description, "inputSchema": orEmpty(t.InputSchema)})
	}
	return tools, nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func shortRaw(raw json.RawMessage) string {
	if raw == nil {
		return "nothing"
	}
	s := strings.Join(strings.Fields(string(raw)), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
