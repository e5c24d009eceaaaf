package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/troy-audit/troy/internal/gateway"
)

// roleDeployment is a deployment whose gateway also accepts an agent token for "a", one
// for "b" and a reader token, besides the admin tokens of newGateway.
func roleDeployment(t *testing.T) (*httptest.Server, map[string]string) {
	t.Helper()
	secrets := map[string]string{}
	var toks []gateway.Token
	for name, role := range map[string]gateway.Role{"a": gateway.RoleAgent, "b": gateway.RoleAgent, "reader": gateway.RoleReader} {
		agent := ""
		if role == gateway.RoleAgent {
			agent = name
		}
		secret, tok, err := gateway.Issue(role, agent)
		if err != nil {
			t.Fatal(err)
		}
		secrets[name], toks = secret, append(toks, tok)
	}
	secrets["admin"] = token
	g, _ := newGateway(t, gateway.Config{MaxBody: 4096, Tokens: toks})
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, secrets
}

func stepBody(agent, trace string, seq int) string {
	return fmt.Sprintf(`{"trace_id": %q, "agent": %q, "run": "r1", "seq": %d, "step": {"step_id": "s%d", "type": "tool_call", "description": "search"}}`, trace, agent, seq, seq)
}

// forbiddenAs checks a 403 naming the role and what it may do.
func forbiddenAs(t *testing.T, what string, r response, role string) {
	t.Helper()
	e, _ := r.body["error"].(map[string]any)
	if r.status != 403 || e["code"] != "forbidden" || e["role"] != role || e["may"] == "" || !strings.Contains(fmt.Sprint(e["message"]), role+" token may") {
		t.Errorf("%s: %d %s, want a 403 naming the role %s and what it may do", what, r.status, r.raw, role)
	}
}

// Who may do what, endpoint by endpoint, with the bodies agents send.
func TestRoles(t *testing.T) {
	srv, tok := roleDeployment(t)
	for _, tt := range []struct {
		name, who, method, path, body string
		status                        int // 0: anything but 401 and 403
		role                          string
	}{
		{"agent a writes its own steps", "a", "POST", "/v1/steps", stepBody("a", "t-a", 0), 202, ""},
		{"agent a writes agent b's steps", "a", "POST", "/v1/steps", stepBody("b", "t-b", 0), 403, "agent"},
		{"agent a records an output of agent b's trace", "a", "POST", "/v1/traces/t-b/output", `{"agent": "b", "run": "r1", "step_id": "s0", "output": {}}`, 403, "agent"},
		{"agent a ends agent b's trace", "a", "POST", "/v1/traces/t-b/end", `{"agent": "b", "run": "r1", "steps": 1}`, 403, "agent"},
		{"agent a ends its own trace", "a", "POST", "/v1/traces/t-a/end", `{"agent": "a", "run": "r1", "steps": 1}`, 202, ""},
		{"a reader posts a step", "reader", "POST", "/v1/steps", stepBody("a", "t-r", 0), 403, "reader"},
		{"a reader checks a step", "reader", "POST", "/v1/guard/check", `{"session": "s", "agent": "a", "step": {"action": "read"}}`, 403, "reader"},
		{"a reader ends a trace", "reader", "POST", "/v1/traces/t-a/end", `{"agent": "a", "run": "r1"}`, 403, "reader"},
		{"agent a checks its own session", "a", "POST", "/v1/guard/check", `{"session": "sess", "agent": "a", "step": {"action": "read"}}`, 200, ""},
		{"agent a checks a session of agent b", "a", "POST", "/v1/guard/check", `{"session": "sess", "agent": "b", "step": {"action": "read"}}`, 403, "agent"},
		{"agent a records an output in agent b's session", "a", "POST", "/v1/traces/sess/output", `{"agent": "b", "step_id": "x", "output": {}}`, 403, "agent"},
		{"agent a ends agent b's session", "a", "POST", "/v1/traces/sess/end", `{"agent": "b"}`, 403, "agent"},
		{"agent a checks with no agent", "a", "POST", "/v1/guard/check", `{"session": "sess", "step": {"action": "read"}}`, 403, "agent"},
		{"agent b checks its own session", "b", "POST", "/v1/guard/check", `{"session": "sess", "agent": "b", "step": {"action": "read"}}`, 200, ""},
		{"a reader reads a report", "reader", "GET", "/v1/traces/t-a/report?agent=a", "", 0, ""},
		{"agent a reads its own report", "a", "GET", "/v1/traces/t-a/report?agent=a", "", 0, ""},
		{"agent a reads agent b's report", "a", "GET", "/v1/traces/t-b/report?agent=b", "", 403, "agent"},
		{"agent a puts a policy", "a", "PUT", "/v1/policies/" + sha(uploadPolicy), uploadPolicy, 403, "agent"},
		{"a reader puts a policy", "reader", "PUT", "/v1/policies/" + sha(uploadPolicy), uploadPolicy, 403, "reader"},
		{"the admin puts a policy", "admin", "PUT", "/v1/policies/" + sha(uploadPolicy), uploadPolicy, 200, ""},
		// As an SDK given the policy file does before its checks: answered, nothing written.
		{"agent a uploads the policy the admin stored", "a", "PUT", "/v1/policies/" + sha(uploadPolicy), uploadPolicy, 200, ""},
		{"agent a uploads another policy", "a", "PUT", "/v1/policies/" + sha(uploadPythonPolicy), uploadPythonPolicy, 403, "agent"},
		{"the admin writes agent b's steps", "admin", "POST", "/v1/steps", stepBody("b", "t-b", 0), 202, ""},
	} {
		r := call(t, srv, tt.method, tt.path, tok[tt.who], tt.body)
		switch {
		case tt.role != "":
			forbiddenAs(t, tt.name, r, tt.role)
		case tt.status == 0 && (r.status == 401 || r.status == 403):
			t.Errorf("%s: %d %s, want it allowed", tt.name, r.status, r.raw)
		case tt.status != 0 && r.status != tt.status:
			t.Errorf("%s: %d %s, want %d", tt.name, r.status, r.raw, tt.status)
		}
	}
	// A refused write stored nothing: agent b's trace t-b holds the admin's step alone,
	// and agent a's end of it did not end it.
	r := call(t, srv, "POST", "/v1/traces/t-b/end", tok["b"], `{"agent": "b", "run": "r1", "steps": 1}`)
	if r.status != 202 {
		t.Fatalf("b's end: %d %s", r.status, r.raw)
	}
	if a := waitReport(t, srv, "/v1/traces/t-b/report?agent=b"); len(a.Trace.Steps) != 1 {
		t.Fatalf("b's trace: %+v", a.Trace.Steps)
	}
}

// The OpenAPI document states who may call each operation (x-troy-roles), and the
// router agrees: each role not listed is answered 403 naming it, each listed is let
// through.
func TestOpenAPIRolesAgreeWithTheRouter(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Roles []gateway.Role `json:"x-troy-roles"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(gateway.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string][]gateway.Role{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if op.Roles == nil {
				t.Errorf("%s %s: no x-troy-roles", method, path)
			}
			if len(op.Roles) > 0 { // [] is a public document
				documented[strings.ToUpper(method)+" "+path] = op.Roles
			}
		}
	}
	routed := map[string][]gateway.Role{}
	for _, rt := range gateway.Routes() {
		routed[rt.Method+" "+rt.Pattern] = rt.Roles
	}
	for k, roles := range routed {
		if !slices.Equal(documented[k], roles) {
			t.Errorf("%s: the document says %v, the router %v", k, documented[k], roles)
		}
	}
	for k := range documented {
		if routed[k] == nil {
			t.Errorf("%s: documented, not routed", k)
		}
	}

	srv, tok := roleDeployment(t)
	if r := call(t, srv, "PUT", "/v1/policies/"+sha(uploadPolicy), tok["admin"], uploadPolicy); r.status != 200 {
		t.Fatalf("storing the policy: %d %s", r.status, r.raw)
	}
	// A request each route accepts from the agent "a" (its own) or anyone allowed.
	bodies := map[string]struct{ path, body string }{
		"POST /v1/guard/check":        {"/v1/guard/check", `{"session": "all", "agent": "a", "step": {"action": "read"}}`},
		"POST /v1/steps":              {"/v1/steps", stepBody("a", "all", 0)},
		"POST /v1/traces/{id}/output": {"/v1/traces/all/output", `{"agent": "a", "run": "r1", "step_id": "s0", "output": {}}`},
		"POST /v1/traces/{id}/end":    {"/v1/traces/all/end", `{"agent": "a", "run": "r1", "steps": 1}`},
		"GET /v1/traces/{id}/report":  {"/v1/traces/all/report?agent=a", ""},
		"PUT /v1/policies/{hash}":     {"/v1/policies/" + sha(uploadPolicy), uploadPolicy},
	}
	for _, rt := range gateway.Routes() {
		k := rt.Method + " " + rt.Pattern
		req, ok := bodies[k]
		if !ok {
			t.Errorf("%s: no request for it in this test", k)
			continue
		}
		for _, role := range gateway.Roles() {
			who := map[gateway.Role]string{gateway.RoleAgent: "a", gateway.RoleReader: "reader", gateway.RoleAdmin: "admin"}[role]
			r := call(t, srv, rt.Method, req.path, tok[who], req.body)
			if slices.Contains(rt.Roles, role) {
				if r.status == 401 || r.status == 403 {
					t.Errorf("%s as %s: %d %s, want it let through", k, role, r.status, r.raw)
				}
			} else {
				forbiddenAs(t, k+" as "+string(role), r, string(role))
			}
		}
	}
}
