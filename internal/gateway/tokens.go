package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/troy-audit/troy/schemas"
)

// Role is what a token may do at the gateway.
type Role string

// The roles. An agent token is scoped to one agent: it writes that agent's traces and
// checks that agent's guard sessions, and reads that agent's reports. A reader token
// reads every report and writes nothing. An admin token may do everything, storing
// policies included.
const (
	RoleAgent  Role = "agent"
	RoleReader Role = "reader"
	RoleAdmin  Role = "admin"
)

// Roles lists the roles, from the least to the most powerful.
func Roles() []Role { return []Role{RoleAgent, RoleReader, RoleAdmin} }

// may says what a role may do, for 403s and the documentation.
func (r Role) may(agent string) string {
	switch r {
	case RoleAgent:
		return fmt.Sprintf("write agent %q's traces (steps, outputs, ends), check its guard sessions, read its reports and upload policies an admin stored", agent)
	case RoleReader:
		return "read reports"
	case RoleAdmin:
		return "everything"
	}
	return "nothing"
}

// Token is a bearer token the gateway accepts, kept as the SHA-256 of its text: the
// gateway and the tokens file never hold the token itself. SHA-256 rather than a
// password hash such as bcrypt because an issued token is 256 random bits, not a
// password a person chose: no dictionary helps to invert its hash, so a slow hash would
// only slow every request down.
type Token struct {
	Hash  [sha256.Size]byte
	Role  Role
	Agent string // the agent an agent token is scoped to
	// Plain is set for a token read as plain text (an older tokens file or
	// TROY_HTTP_TOKENS): it is an admin token, kept hashed in memory all the same.
	Plain bool
}

// ID names a token without revealing it: the first 12 hex digits of its hash.
func (t Token) ID() string { return hex.EncodeToString(t.Hash[:6]) }

// Line is the token's entry in a tokens file: "sha256:HEX ROLE", then for an agent token
// its name as a JSON string (an agent's name may hold spaces).
func (t Token) Line() string {
	s := "sha256:" + hex.EncodeToString(t.Hash[:]) + " " + string(t.Role)
	if t.Role == RoleAgent {
		name, _ := json.Marshal(t.Agent)
		s += " " + string(name)
	}
	return s
}

// HashToken is the SHA-256 of a token's text.
func HashToken(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// Issue makes a new token for role (and agent, for an agent token): the secret to give
// its holder once, and the Token to keep.
func Issue(role Role, agent string) (secret string, t Token, err error) {
	if err := checkRole(role, agent); err != nil {
		return "", Token{}, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Token{}, fmt.Errorf("a random token: %w", err)
	}
	// A prefix names what the secret is when it turns up somewhere (a log, a paste), and
	// base64url keeps it within RFC 6750's token characters.
	secret = "troy_" + string(role) + "_" + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, Token{Hash: HashToken(secret), Role: role, Agent: agent}, nil
}

func checkRole(role Role, agent string) error {
	switch role {
	case RoleAgent:
		if agent == "" {
			return fmt.Errorf("an agent token needs the agent's name")
		}
		if err := schemas.CheckID(agent); err != nil {
			return fmt.Errorf("agent name: %w", err)
		}
	case RoleReader, RoleAdmin:
		if agent != "" {
			return fmt.Errorf("the %s role has no agent (%q given)", role, agent)
		}
	default:
		return fmt.Errorf("role %q is not one of agent, reader, admin", role)
	}
	return nil
}

// PlainToken is an older plain-text token: it checks RFC 6750's syntax and makes an
// admin token of it, since such tokens could do everything before roles existed.
func PlainToken(secret string) (Token, error) {
	if err := checkToken(secret); err != nil {
		return Token{}, err
	}
	return Token{Hash: HashToken(secret), Role: RoleAdmin, Plain: true}, nil
}

// ParseTokens reads a tokens file: one token a line, as troyctl auth … --http writes it,
//
//	sha256:<64 hex digits> agent "support-bot"
//	sha256:<64 hex digits> reader
//	sha256:<64 hex digits> admin
//
// Blank lines and lines whose first non-blank character is '#' are ignored. A line that
// is not such an entry is read as a plain token, as tokens files held before roles: it
// must have RFC 6750's b64token syntax (letters, digits and -._~+/, then optional '='),
// so that a stray comment, a comma-separated list or a token pasted with its "Bearer "
// prefix is an error naming the line rather than a token someone could send; it is an
// admin token (Plain set, for the caller to warn about). name names the source in errors,
// such as the file's path.
func ParseTokens(name, text string) ([]Token, error) {
	var tokens []Token
	for i, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		t, err := parseLine(l)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, i+1, err)
		}
		tokens = append(tokens, t)
	}
	return tokens, nil
}

func parseLine(l string) (Token, error) {
	rest, ok := strings.CutPrefix(l, "sha256:")
	if !ok {
		return PlainToken(l)
	}
	const want = `expected "sha256:<64 hex digits> agent \"NAME\"", "… reader" or "… admin"`
	hexHash, rest, _ := strings.Cut(rest, " ")
	var t Token
	// The length first: hex.Decode writes past a buffer too short for its input.
	if len(hexHash) != 2*sha256.Size {
		return Token{}, fmt.Errorf("the hash %.70q is not 64 hex digits; %s", hexHash, want)
	}
	if n, err := hex.Decode(t.Hash[:], []byte(hexHash)); err != nil || n != sha256.Size {
		return Token{}, fmt.Errorf("the hash %.70q is not 64 hex digits; %s", hexHash, want)
	}
	role, scope, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
	t.Role = Role(role)
	if scope = strings.TrimSpace(scope); scope != "" {
		if t.Role != RoleAgent {
			return Token{}, fmt.Errorf("the %s role has no agent, but %.70q follows; %s", role, scope, want)
		}
		if err := json.Unmarshal([]byte(scope), &t.Agent); err != nil {
			return Token{}, fmt.Errorf("the agent %.70q is not a JSON string; %s", scope, want)
		}
	}
	if err := checkRole(t.Role, t.Agent); err != nil {
		return Token{}, fmt.Errorf("%w; %s", err, want)
	}
	return t, nil
}

// ParseTokenList reads plain tokens separated by commas or newlines, as an environment
// variable gives them; empty entries are ignored. Each is an admin token.
func ParseTokenList(name, text string) ([]Token, error) {
	var tokens []Token
	for i, s := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		t, err := PlainToken(s)
		if err != nil {
			return nil, fmt.Errorf("%s: token %d: %w", name, i+1, err)
		}
		tokens = append(tokens, t)
	}
	return tokens, nil
}

// checkToken checks RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func checkToken(t string) error {
	body := strings.TrimRight(t, "=")
	if body == "" {
		return fmt.Errorf("a token needs letters or digits, not only '='")
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0 {
			continue
		}
		return fmt.Errorf("a token may hold only letters, digits and -._~+/ (then '='), not %q; write comments on lines of their own starting with #", string(rune(c)))
	}
	return nil
}

// bearer returns the credentials of an Authorization header with the Bearer scheme,
// whose name is case-insensitive (RFC 7235 section 2.1).
func bearer(r *http.Request) (string, bool) { return bearerOf(r.Header.Get("Authorization")) }

// bearerOf is bearer of an Authorization header's value.
func bearerOf(authorization string) (string, bool) {
	scheme, cred, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimLeft(cred, " ")
	return cred, cred != ""
}
