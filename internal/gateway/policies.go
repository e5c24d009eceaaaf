package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/troy-audit/troy/evaluator"
	"github.com/troy-audit/troy/policies"
)

// PolicyStored answers a policy upload: the hash that checks and steps name the policy
// by (the content hash of the policy as troy stores it, which is not the hash of the
// uploaded bytes when they differ in form), its id and its rule count.
type PolicyStored struct {
	Policy   string `json:"policy"`
	PolicyID string `json:"policy_id"`
	Rules    int    `json:"rules"`
}

// putPolicy stores a policy document in the policy bucket that serve reads revisions
// from, so that an SDK given a policy file can use it against a deployment as it does
// locally. The path names the SHA-256 of the body, which is checked, so a truncated or
// altered upload is refused; storing is idempotent, the key being the stored policy's
// own content hash.
func (g *Gateway) putPolicy(w http.ResponseWriter, r *http.Request) error {
	want := strings.ToLower(r.PathValue("hash"))
	if len(want) != sha256.Size*2 || strings.Trim(want, "0123456789abcdef") != "" {
		return errorf(http.StatusBadRequest, "invalid", "the path's hash %q is not a SHA-256 in hex (64 characters)", r.PathValue("hash"))
	}
	body, err := io.ReadAll(r.Body) // bounded by the MaxBytesReader auth put in place
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "too_large", "the policy is over the %d-byte limit", tooBig.Limit)
		}
		return errorf(http.StatusBadRequest, "bad_body", "reading the body: %v", err)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != want {
		return errorf(http.StatusBadRequest, "hash_mismatch", "the body's SHA-256 is %s, not the %s of the path", got, want)
	}
	c, err := compileUpload(body, want)
	if err != nil {
		return errorf(http.StatusBadRequest, "invalid_policy", "%s", oneLine(err))
	}
	raw, err := c.Policy().MarshalJSON()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.Timeout)
	defer cancel()
	if tok, _ := r.Context().Value(tokenKey{}).(Token); tok.Role != RoleAdmin {
		// An SDK given a policy file uploads it before its checks, with the agent's
		// token: a policy an admin stored is answered as a store would be, and nothing
		// is written; storing a new one is an admin's.
		if _, err := g.b.GetPolicy(ctx, c.Hash()); err != nil {
			return forbidden(tok, "storing a policy not stored yet needs an admin token (%v)", err)
		}
	} else if err := g.b.PutPolicy(ctx, c.Hash(), raw); err != nil {
		return errorf(http.StatusServiceUnavailable, "stream_unavailable", "not stored: %v", err)
	}
	writeJSON(w, http.StatusOK, PolicyStored{Policy: c.Hash(), PolicyID: c.Policy().PolicyID, Rules: len(c.Policy().Rules)})
	return nil
}

// compileUpload validates an uploaded policy as a policy file is validated: conditions in
// the Python tool's dialect are converted, and every condition must compile.
func compileUpload(body []byte, hash string) (*evaluator.Compiled, error) {
	p, err := policies.ParseConverted(body, "uploaded policy "+hash[:12], "policy-"+hash[:12])
	if err != nil {
		return nil, err
	}
	return evaluator.Compile(p)
}

// oneLine joins the lines of an error (errors.Join gives one per problem) with "; ".
func oneLine(err error) string {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
