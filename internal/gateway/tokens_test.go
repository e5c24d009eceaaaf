package gateway_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/internal/gateway"
)

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
		err        string
	}{
		{"one per line", "first-token\nsecond.token_2~+/==\n", []string{"first-token", "second.token_2~+/=="}, ""},
		{"comments and blank lines are ignored", "# tokens for the agents\n\n  # indented comment\nabc123\r\n\t\n", []string{"abc123"}, ""},
		{"spaces around a token are dropped", "  abc123  \n", []string{"abc123"}, ""},
		{"nothing but comments", "# none yet\n", nil, ""},
		{"a comment after a token", "abc123 # the CI's\n", nil, "tokens:1: "},
		{"a comma-separated list", "# two\nabc,def\n", nil, "tokens:2: "},
		{"the scheme pasted in", "Bearer abc123\n", nil, "tokens:1: "},
		{"only padding", "==\n", nil, "tokens:1: a token needs letters or digits"},
		{"a non-ASCII letter", "tökén\n", nil, "tokens:1: "},
	}
	for _, tt := range tests {
		got, err := gateway.ParseTokens("tokens", tt.text)
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("%s: %v, want an error starting %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q %v, want %q", tt.name, got, err, tt.want)
		}
	}
	got, err := gateway.ParseTokenList("$TROY_HTTP_TOKENS", "abc, def,,ghi")
	if err != nil || !slices.Equal(got, []string{"abc", "def", "ghi"}) {
		t.Errorf("a list: %q %v", got, err)
	}
	if _, err := gateway.ParseTokenList("$TROY_HTTP_TOKENS", "abc,# no"); err == nil || !strings.HasPrefix(err.Error(), "$TROY_HTTP_TOKENS: token 2: ") {
		t.Errorf("a list with a comment: %v", err)
	}
}

// The Bearer scheme's name is case-insensitive (RFC 7235); anything else is refused.
func TestBearerScheme(t *testing.T) {
	srv := deployment(t)
	for _, tt := range []struct {
		header string
		status int
	}{
		{"Bearer " + token, 200},
		{"bearer " + token, 200},
		{"BEARER " + token, 200},
		{"Bearer   " + token, 200},
		{"Bearer " + token + "x", 401},
		{"Bearer", 401},
		{"Bearer ", 401},
		{"Basic " + token, 401},
		{token, 401},
		{"Bearer # comment", 401},
	} {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/guard/check", strings.NewReader(`{"session": "scheme", "agent": "a", "step": {"action": "read"}}`))
		req.Header.Set("Authorization", tt.header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("Authorization: %q: %d, want %d", tt.header, resp.StatusCode, tt.status)
		}
	}
}
