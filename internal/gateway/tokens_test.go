package gateway_test

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/internal/gateway"
)

func TestParseTokens(t *testing.T) {
	h := func(secret string) string { x := gateway.HashToken(secret); return hex.EncodeToString(x[:]) }
	tests := []struct {
		name, text string
		want       []string // ID role agent plain, one a token
		err        string
	}{
		{"hashed, one per line", "sha256:" + h("a1") + " agent \"support bot\"\nsha256:" + h("r1") + " reader\n  sha256:" + h("x1") + "   admin  \n",
			[]string{h("a1")[:12] + " agent support bot false", h("r1")[:12] + " reader  false", h("x1")[:12] + " admin  false"}, ""},
		{"plain tokens are admins", "first-token\nsecond.token_2~+/==\n", []string{h("first-token")[:12] + " admin  true", h("second.token_2~+/==")[:12] + " admin  true"}, ""},
		{"comments and blank lines are ignored", "# tokens for the agents\n\n  # indented comment\nabc123\r\n\t\n", []string{h("abc123")[:12] + " admin  true"}, ""},
		{"nothing but comments", "# none yet\n", nil, ""},
		{"a comment after a token", "abc123 # the CI's\n", nil, "tokens:1: "},
		{"a comma-separated list", "# two\nabc,def\n", nil, "tokens:2: "},
		{"the scheme pasted in", "Bearer abc123\n", nil, "tokens:1: "},
		{"only padding", "==\n", nil, "tokens:1: a token needs letters or digits"},
		{"a non-ASCII letter", "tökén\n", nil, "tokens:1: "},
		{"a short hash", "sha256:abcd admin\n", nil, `tokens:1: the hash "abcd" is not 64 hex digits`},
		{"an unknown role", "sha256:" + h("x") + " root\n", nil, `tokens:1: role "root" is not one of agent, reader, admin`},
		{"an agent without a name", "sha256:" + h("x") + " agent\n", nil, "tokens:1: an agent token needs the agent's name"},
		{"an agent name not quoted", "sha256:" + h("x") + " agent bot\n", nil, `tokens:1: the agent "bot" is not a JSON string`},
		{"a reader with an agent", "sha256:" + h("x") + ` reader "bot"` + "\n", nil, "tokens:1: the reader role has no agent"},
		{"an agent name with a control character", "sha256:" + h("x") + ` agent "a\u001b"` + "\n", nil, "tokens:1: agent name: "},
	}
	for _, tt := range tests {
		got, err := gateway.ParseTokens("tokens", tt.text)
		if tt.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
				t.Errorf("%s: %v, want an error starting %q", tt.name, err, tt.err)
			}
			continue
		}
		var desc []string
		for _, tok := range got {
			desc = append(desc, fmt.Sprintf("%s %s %s %v", tok.ID(), tok.Role, tok.Agent, tok.Plain))
		}
		if err != nil || !slices.Equal(desc, tt.want) {
			t.Errorf("%s: %q %v, want %q", tt.name, desc, err, tt.want)
		}
	}
	got, err := gateway.ParseTokenList("$TROY_HTTP_TOKENS", "abc, def,,ghi")
	if err != nil || len(got) != 3 || got[1].Hash != gateway.HashToken("def") || got[1].Role != gateway.RoleAdmin || !got[1].Plain {
		t.Errorf("a list: %+v %v", got, err)
	}
	if _, err := gateway.ParseTokenList("$TROY_HTTP_TOKENS", "abc,# no"); err == nil || !strings.HasPrefix(err.Error(), "$TROY_HTTP_TOKENS: token 2: ") {
		t.Errorf("a list with a comment: %v", err)
	}
}

// An issued token's line reads back as the same token, and holds only its hash.
func TestIssue(t *testing.T) {
	for _, tt := range []struct {
		role  gateway.Role
		agent string
		err   string
	}{
		{gateway.RoleAgent, "support bot \"7\"", ""},
		{gateway.RoleReader, "", ""},
		{gateway.RoleAdmin, "", ""},
		{gateway.RoleAgent, "", "an agent token needs the agent's name"},
		{gateway.RoleAdmin, "bot", `the admin role has no agent ("bot" given)`},
		{"owner", "", `role "owner" is not one of agent, reader, admin`},
	} {
		secret, tok, err := gateway.Issue(tt.role, tt.agent)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("%s %q: %v, want %q", tt.role, tt.agent, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, "troy_"+string(tt.role)+"_") || len(secret) < 40 {
			t.Errorf("secret %q", secret)
		}
		line := tok.Line()
		if strings.Contains(line, secret) || strings.Contains(line, secret[len(secret)-20:]) {
			t.Errorf("the line %q holds the token", line)
		}
		back, err := gateway.ParseTokens("tokens", "# issued\n"+line+"\n")
		if err != nil || len(back) != 1 || back[0] != tok || back[0].Hash != gateway.HashToken(secret) {
			t.Errorf("%q read back as %+v %v, want %+v", line, back, err, tok)
		}
	}
	a, _, _ := gateway.Issue(gateway.RoleReader, "")
	b, _, _ := gateway.Issue(gateway.RoleReader, "")
	if a == b {
		t.Error("two tokens alike")
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
