package mcpproxy

import (
	"bytes"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// tapAll relays stream through an eventTap in reads of at most chunk bytes, returning
// what was relayed and the events read.
func tapAll(t testing.TB, stream []byte, chunk, max int) ([]byte, []string) {
	var events []string
	tap := &eventTap{rc: io.NopCloser(&chunkReader{b: stream, n: chunk}), max: max, log: slog.New(slog.DiscardHandler),
		event: func(d []byte) { events = append(events, string(d)) }}
	out, err := io.ReadAll(tap)
	if err != nil {
		t.Fatal(err)
	}
	return out, events
}

// chunkReader hands out at most n bytes a read, as a network does.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.b))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}

func TestEventTap(t *testing.T) {
	for _, c := range []struct {
		name, stream string
		max          int
		want         []string
	}{
		{"one event", "event: message\ndata: {\"id\":1}\n\n", 100, []string{`{"id":1}`}},
		{"id and retry are not data", "id: 7\nretry: 10\ndata: a\n\n", 100, []string{"a"}},
		{"data lines are joined", "data: a\ndata: b\n\n", 100, []string{"a\nb"}},
		{"CRLF and CR end lines", "data: a\r\n\r\ndata: b\r\rdata:c\n\n", 100, []string{"a", "b", "c"}},
		{"comments and empty events", ": keep-alive\n\n\ndata: x\n\n", 100, []string{"x"}},
		{"an unfinished event is not read", "data: x\n", 100, nil},
		{"no space after the colon", "data:{}\n\n", 100, []string{"{}"}},
		{"an event over the limit is skipped", "data: 0123456789\n\ndata: ok\n\n", 8, []string{"ok"}},
		{"data lines over the limit together", "data: 01234\ndata: 56789\n\ndata: ok\n\n", 8, []string{"ok"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, chunk := range []int{1, 3, 1 << 20} {
				out, events := tapAll(t, []byte(c.stream), chunk, c.max)
				if string(out) != c.stream {
					t.Fatalf("chunk %d: relayed %q, want the stream unchanged", chunk, out)
				}
				if !slices.Equal(events, c.want) {
					t.Fatalf("chunk %d: events %q, want %q", chunk, events, c.want)
				}
			}
		})
	}
}

// FuzzEventTap: any stream is relayed unchanged, however the network cuts it, and gives
// the same events, each within the limit.
func FuzzEventTap(f *testing.F) {
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"), uint8(3))
	f.Add([]byte("data: a\r\n\r\ndata: b\r\rdata:c\n\n: c\n"), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		const max = 64
		whole, want := tapAll(t, stream, len(stream)+1, max)
		out, events := tapAll(t, stream, int(chunk)+1, max)
		if !bytes.Equal(whole, stream) || !bytes.Equal(out, stream) {
			t.Fatalf("the stream was changed")
		}
		if !slices.Equal(events, want) {
			t.Fatalf("chunked %d: events %q, whole %q", chunk, events, want)
		}
		for _, e := range events {
			if len(e) > max || strings.ContainsAny(e, "\r") {
				t.Fatalf("event %q: over the limit or holding a line end", e)
			}
		}
	})
}
