package mcpproxy

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	"github.com/troy-audit/troy/schemas"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name, line          string
		method, id          string
		request, response   bool
		batch               bool
		calls               int
		wantErr             string
		notificationNoIDKey bool
	}{
		{name: "request", line: `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}`, method: "tools/call", id: "7", request: true},
		{name: "string id", line: `{"jsonrpc":"2.0","id":"a b","method":"tools/list"}`, method: "tools/list", id: `"a b"`, request: true},
		{name: "notification", line: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}`, method: "notifications/cancelled"},
		{name: "null id is no id", line: `{"jsonrpc":"2.0","id":null,"method":"x"}`, method: "x"},
		{name: "response", line: `{"jsonrpc":"2.0","id":3,"result":{}}`, id: "3", response: true},
		{name: "error response", line: `{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"m"}}`, id: "3", response: true},
		// The last of keys given twice counts, as in the servers' parsers.
		{name: "duplicate key", line: `{"id":1,"method":"tools/list","method":"tools/call"}`, method: "tools/call", id: "1", request: true},
		// Keys match exactly, and another spelling of a key the proxy reads is refused: a
		// server matching keys case-insensitively would read it as that key.
		{name: "case of keys", line: `{"id":1,"method":"tools/call","Method":"ping"}`, wantErr: `key "Method": another spelling of "method"`},
		{name: "a key folded", line: `{"id":1,"method":"ping","paramſ":{}}`, wantErr: `another spelling of "params"`},
		{name: "unknown keys pass", line: `{"id":1,"method":"ping","_meta":{}}`, method: "ping", id: "1", request: true},
		{name: "a long id", line: `{"id":"` + strings.Repeat("x", 300) + `","method":"ping"}`, wantErr: "id: longer than 256 bytes"},
		{name: "escaped method", line: `{"id":1,"method":"tools\/call"}`, method: "tools/call", id: "1", request: true},
		{name: "batch", line: `[{"id":1,"method":"ping"},{"id":2,"method":"tools/call"}]`, batch: true, calls: 1},
		{name: "batch without calls", line: `[{"id":1,"method":"ping"}]`, batch: true},
		{name: "not JSON", line: `{"id":1,`, wantErr: "not a JSON-RPC message"},
		{name: "not an object", line: `42`, wantErr: "not a JSON-RPC message"},
		{name: "null", line: `null`, wantErr: "expected an object"},
		{name: "method not a string", line: `{"id":1,"method":5}`, wantErr: "method: expected a string, got 5"},
		{name: "empty method", line: `{"id":1,"method":""}`, wantErr: "empty string"},
		{name: "bad batch element", line: `[{"id":1,"method":5}]`, wantErr: "batch element 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decode([]byte(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.method != tt.method || (tt.id != "" && string(m.id) != tt.id) || m.isRequest() != tt.request ||
				m.isResponse() != tt.response || m.batch != tt.batch || m.calls != tt.calls {
				t.Fatalf("got method %q id %s request %v response %v batch %v calls %d", m.method, m.id, m.isRequest(), m.isResponse(), m.batch, m.calls)
			}
		})
	}
}

// An id is matched by its value: the spelling a peer writes back may differ.
func TestIDKey(t *testing.T) {
	same := [][]string{
		{`7`, `7.0`, `7e0`, `70e-1`},
		{`"7"`, `"\u0037"`},
		{`"a b"`, `"a\u0020b"`},
		{`-0.5`, `-5e-1`},
	}
	seen := map[string]string{}
	for _, group := range same {
		want := idKey(json.RawMessage(group[0]))
		for _, id := range group[1:] {
			if got := idKey(json.RawMessage(id)); got != want {
				t.Errorf("id %s: key %q, want %q as for %s", id, got, want, group[0])
			}
		}
		if other, ok := seen[want]; ok {
			t.Errorf("%s and %s share a key", group[0], other)
		}
		seen[want] = group[0]
	}
}

func TestDecodeCall(t *testing.T) {
	tests := []struct {
		params, name, args, wantErr string
	}{
		{params: `{"name":"write_file","arguments":{"path":"/x","n":2}}`, name: "write_file", args: `{"n":2,"path":"/x"}`},
		{params: `{"name":"ping"}`, name: "ping", args: `null`},
		{params: `{"name":"ping","arguments":null}`, name: "ping", args: `null`},
		{params: `{"name":"a","name":"b"}`, name: "b", args: `null`},
		{params: `{"name":"ping","NAME":"bash"}`, wantErr: `another spelling of "name"`},
		{params: `{"arguments":{}}`, wantErr: "params.name: expected a tool's name, got nothing"},
		{params: `{"name":""}`, wantErr: "params.name"},
		{params: `{"name":3}`, wantErr: "params.name: expected a tool's name, got 3"},
		{params: `{"name":"x","arguments":[1]}`, wantErr: "params.arguments: expected an object, got [1]"},
		{params: `[]`, wantErr: "expected an object with name and arguments"},
		{params: ``, wantErr: "expected an object with name and arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.params, func(t *testing.T) {
			c, err := decodeCall(json.RawMessage(tt.params))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			args, _ := json.Marshal(c.args)
			if c.name != tt.name || string(args) != tt.args {
				t.Fatalf("got %q %s, want %q %s", c.name, args, tt.name, tt.args)
			}
		})
	}
}

func TestServerName(t *testing.T) {
	tests := []struct {
		command []string
		want    string
	}{
		{[]string{"mcp-server-git"}, "mcp-server-git"},
		{[]string{"/usr/local/bin/my-server", "--flag"}, "my-server"},
		{[]string{"npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"}, "server-filesystem"},
		{[]string{"node", "/x/node_modules/@modelcontextprotocol/server-everything/dist/index.js"}, "server-everything"},
		{[]string{"node", "/x/node_modules/plain-server/index.js"}, "plain-server"},
		{[]string{"uvx", "mcp-server-fetch"}, "mcp-server-fetch"},
		{[]string{"docker", "run", "-i", "--rm", "mcp/github"}, "github"},
		{[]string{"npx"}, "npx"},
	}
	for _, tt := range tests {
		if got := ServerName(tt.command); got != tt.want {
			t.Errorf("ServerName(%q) = %q, want %q", tt.command, got, tt.want)
		}
	}
}

func TestIDText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Claude Desktop", "Claude Desktop"},
		{" cursor\n", "cursor"},
		{"a\x00b\x1bc", "abc"},
		{"bad\xffutf8", "badutf8"},
		{strings.Repeat("é", 200), strings.Repeat("é", schemas.MaxIDLength/2)},
	}
	for _, tt := range tests {
		got := idText(tt.in)
		if got != tt.want || schemas.CheckID(got) != nil {
			t.Errorf("idText(%q) = %q, want %q (a valid id)", tt.in, got, tt.want)
		}
	}
}

func TestReadBoundedLine(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 100) + "\nok\r\nlast"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	want := []struct {
		data    string
		tooLong bool
	}{{"short", false}, {"", true}, {"ok", false}, {"last", false}}
	for i, w := range want {
		data, tooLong, err := ReadBoundedLine(br, 50)
		if err != nil || string(data) != w.data || tooLong != w.tooLong {
			t.Fatalf("line %d: got %q tooLong=%v err=%v, want %q tooLong=%v", i, data, tooLong, err, w.data, w.tooLong)
		}
	}
	if _, _, err := ReadBoundedLine(br, 50); err == nil {
		t.Fatal("after the last line: want io.EOF")
	}
}

// FuzzDecode feeds the decoders what a client or server might send: none may panic, and
// what decode calls a tools/call must be one by the rules the servers parse with.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/x"}}}`,
		`{"jsonrpc":"2.0","id":"x","method":"initialize","params":{"clientInfo":{"name":"c"}}}`,
		`{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a","description":"d","inputSchema":{"type":"object"}}]}}`,
		`[{"id":1,"method":"tools/call"}]`, `{"id":1,"method":"tools/call","Method":"x"}`, `null`, `[]`, `{`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := decode(line)
		if err != nil {
			return
		}
		if m.method == methodCall {
			var fields map[string]any
			if json.Unmarshal(line, &fields) != nil || fields["method"] != methodCall {
				t.Fatalf("decode says tools/call, the message's method is %v", fields["method"])
			}
			if c, err := decodeCall(m.params); err == nil && c.name == "" {
				t.Fatalf("a call without a name: %q", line)
			}
		}
		if m.result != nil {
			toolsOf(m.result)
		}
		if m.params != nil {
			idText(clientName(m.params))
		}
		if m.isResponse() {
			outputOf(m)
		}
		_ = m.idKey()
	})
}

func TestLongLineID(t *testing.T) {
	for _, c := range []struct {
		name, head, tail, want string
	}{
		{"the TypeScript SDK's order", `{"result":{"content":[{"type":"text","text":"aaa`, `aaa"}]},"jsonrpc":"2.0","id":9}`, "9"},
		{"jsonrpc then id", `{"jsonrpc":"2.0","id":"req-1","result":{"id":3,`, `}}`, `"req-1"`},
		{"id first", `{"id":-4,"jsonrpc":"2.0","result":`, `}}`, "-4"},
		{"an id nested in the result is not the message's", `{"result":{"x":`, `{"id":7}}}`, ""},
		{"id then jsonrpc at the end", `{"result":"`, `","id":12,"jsonrpc":"2.0"}`, "12"},
		{"no id", `{"method":"notifications/message","params":{"data":"`, `"}}`, ""},
	} {
		got := string((&longLine{head: []byte(c.head), tail: []byte(c.tail)}).id())
		if got != c.want {
			t.Errorf("%s: id %q, want %q", c.name, got, c.want)
		}
	}
}
