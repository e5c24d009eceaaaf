package gateway

import (
	"fmt"
	"net/http"
	"strings"
)

// ParseTokens reads a tokens file: one bearer token per line; blank lines and lines whose
// first non-blank character is '#' are ignored, and spaces around a token are dropped.
// A token must have RFC 6750's b64token syntax (letters, digits and -._~+/, then
// optional '='), so that a stray comment, a comma-separated list or a token pasted with
// its "Bearer " prefix is an error naming the line rather than a token someone could send.
// name names the source in errors, such as the file's path.
func ParseTokens(name, text string) ([]string, error) {
	var tokens []string
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if err := checkToken(t); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, i+1, err)
		}
		tokens = append(tokens, t)
	}
	return tokens, nil
}

// ParseTokenList reads tokens separated by commas or newlines, as an environment variable
// gives them; empty entries are ignored.
func ParseTokenList(name, text string) ([]string, error) {
	var tokens []string
	for i, t := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if err := checkToken(t); err != nil {
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
func bearer(r *http.Request) (string, bool) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimLeft(cred, " ")
	return cred, cred != ""
}
