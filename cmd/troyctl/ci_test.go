package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/troy-audit/troy/reporter"
)

func TestGates(t *testing.T) {
	t.Chdir(t.TempDir())
	traces, policy := example(t, "traces"), example(t, "policy.json")
	one := example(t, "traces", "prompt-injection.json") // risk 65: a high and a medium violation
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"no gate", []string{"audit", one, policy}, 0, ""},
		{"fail-on critical passes", []string{"audit", one, policy, "--fail-on", "critical"}, 0, ""},
		{"fail-on high", []string{"audit", one, policy, "--fail-on", "high"}, exitFound, "1 violation(s) of severity high or above (--fail-on high)"},
		{"fail-on low", []string{"audit", one, policy, "--fail-on", "low"}, exitFound, "2 violation(s) of severity low or above"},
		{"max-risk at the score passes", []string{"audit", one, policy, "--max-risk", "65"}, 0, ""},
		{"max-risk below the score", []string{"audit", one, policy, "--max-risk", "64"}, exitFound, "1 trace(s) with a risk score above 64, the highest 65"},
		{"batch fail-on critical", []string{"batch", traces, policy, "-q", "--fail-on", "critical"}, exitFound, "5 violation(s) of severity critical or above"},
		{"batch max-risk", []string{"batch", traces, policy, "-q", "--max-risk", "50"}, exitFound, "2 trace(s) with a risk score above 50, the highest 65"},
		{"batch under its alias", []string{"audit-batch", traces, policy, "-q", "--max-risk", "65"}, 0, ""},
		{"bad severity", []string{"audit", one, policy, "--fail-on", "severe"}, exitError, `--fail-on "severe": expected low, medium, high or critical`},
		{"bad risk", []string{"audit", one, policy, "--max-risk", "101"}, exitError, "--max-risk 101: expected a risk score from 0 to 100"},
		{"bad format", []string{"batch", traces, policy, "--format", "xml"}, exitError, `--format "xml": expected text, json, sarif or junit`},
		{"json and format", []string{"audit", one, policy, "--json", "--format", "sarif"}, exitError, "--json and --format sarif: give one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := troyctl(t, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d (want %d), stderr %q, want %q", r.code, tc.code, r.stderr, tc.want)
			}
		})
	}
}

func TestFormats(t *testing.T) {
	t.Chdir(t.TempDir())
	traces, policy := example(t, "traces"), example(t, "policy.json")
	t.Run("audit sarif on stdout", func(t *testing.T) {
		r := troyctl(t, "audit", example(t, "traces", "raw-sql.json"), policy, "--format", "sarif", "--fail-on", "critical")
		if r.code != exitFound {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var log struct {
			Version string
			Runs    []struct {
				Results []struct {
					RuleID    string
					Locations []struct {
						PhysicalLocation struct{ ArtifactLocation struct{ URI string } }
						LogicalLocations []struct{ FullyQualifiedName string }
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(r.stdout), &log); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		res := log.Runs[0].Results
		if log.Version != "2.1.0" || len(res) != 2 || !strings.HasSuffix(res[0].Locations[0].PhysicalLocation.ArtifactLocation.URI, "/examples/traces/raw-sql.json") ||
			!strings.HasPrefix(res[0].Locations[0].LogicalLocations[0].FullyQualifiedName, "steps[") {
			t.Fatalf("SARIF: %+v", log)
		}
		if _, err := os.Stat(filepath.Join(reporter.DefaultDir(time.Now()), "audit.json")); err != nil {
			t.Fatalf("the reports are written as ever: %v", err)
		}
	})
	t.Run("batch junit to a file", func(t *testing.T) {
		r := troyctl(t, "batch", traces, policy, "-q", "-o", "out", "--format", "junit", "--format-output", "ci/junit.xml")
		if r.code != 0 || r.stdout != "" {
			t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
		}
		data, err := os.ReadFile("ci/junit.xml")
		if err != nil {
			t.Fatal(err)
		}
		var suites reporter.JUnitSuites
		if err := xml.Unmarshal(data, &suites); err != nil {
			t.Fatal(err)
		}
		// six traces, six rules each; seven violations in five traces, one rule each but
		// privilege-escalation's and raw-sql's two at one rule.
		if len(suites.Suites) != 6 || suites.Tests != 36 || suites.Failures != 7 {
			t.Fatalf("suites %d, tests %d, failures %d", len(suites.Suites), suites.Tests, suites.Failures)
		}
	})
	t.Run("text forbids format-output", func(t *testing.T) {
		if r := troyctl(t, "batch", traces, policy, "--format-output", "x.xml"); r.code != exitError || !strings.Contains(r.stderr, "give --format json, sarif or junit too") {
			t.Fatalf("%+v", r)
		}
	})
}

func TestVersionJSONAndFlag(t *testing.T) {
	r := troyctl(t, "version", "--json")
	var bi buildInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &bi) != nil || bi.GoVersion != runtime.Version() || bi.Version == "" || bi.Commit == "" || bi.BuildDate == "" {
		t.Fatalf("version --json: %+v", r)
	}
	if v := troyctl(t, "--version"); v.code != 0 || v.stdout != troyctl(t, "version").stdout {
		t.Fatalf("--version %q differs from version", v.stdout)
	}
	for _, tc := range []struct {
		name                    string
		ver, rev, date, mainVer string
		vcs                     map[string]string
		want                    buildInfo
	}{
		{"ldflags win", "v1.2.3", "abc", "2030-01-02", "v0.0.1", map[string]string{"vcs.revision": "0123456789abcdef", "vcs.time": "2029"},
			buildInfo{Version: "v1.2.3", Commit: "abc", BuildDate: "2030-01-02"}},
		{"from VCS", "", "", "", "(devel)", map[string]string{"vcs.revision": "0123456789abcdef", "vcs.time": "2029-05-06T07:08:09Z", "vcs.modified": "true"},
			buildInfo{Version: "dev-0123456789ab", Commit: "0123456789abcdef-dirty", BuildDate: "2029-05-06T07:08:09Z"}},
		{"module version", "", "", "", "v0.9.0", nil, buildInfo{Version: "v0.9.0", Commit: "unknown", BuildDate: "unknown"}},
		{"nothing", "", "", "", "", nil, buildInfo{Version: "dev", Commit: "unknown", BuildDate: "unknown"}},
	} {
		got := resolveBuildInfo(tc.ver, tc.rev, tc.date, tc.mainVer, tc.vcs)
		tc.want.GoVersion, tc.want.Platform = runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestRootHelpListsBatchAndCompletion(t *testing.T) {
	r := troyctl(t, "--help")
	for _, want := range []string{"\n  batch ", "\n  completion "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("root help lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "audit-batch ") {
		t.Errorf("root help lists audit-batch as a command")
	}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		if c := troyctl(t, "completion", shell); c.code != 0 || !strings.Contains(c.stdout, "troyctl") {
			t.Errorf("completion %s: exit %d", shell, c.code)
		}
	}
}

func TestEnvBinding(t *testing.T) {
	newCmd := func() (*cobra.Command, *string) {
		root := &cobra.Command{Use: "troyctl"}
		var v string
		sub := &cobra.Command{Use: "sub", RunE: func(*cobra.Command, []string) error { return nil }}
		sub.Flags().StringVar(&v, "nats", "", "NATS URL")
		root.AddCommand(sub)
		bindEnv(root, []envBinding{{flag: "nats", vars: []string{"TROY_NATS_URL", "NATS_URL"}}})
		return sub, &v
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"none", nil, nil, ""},
		{"the ecosystem's", nil, map[string]string{"NATS_URL": "nats://b"}, "nats://b"},
		{"troy's first", nil, map[string]string{"TROY_NATS_URL": "nats://a", "NATS_URL": "nats://b"}, "nats://a"},
		{"empty skipped", nil, map[string]string{"TROY_NATS_URL": "", "NATS_URL": "nats://b"}, "nats://b"},
		{"the flag beats both", []string{"--nats", "nats://c"}, map[string]string{"TROY_NATS_URL": "nats://a", "NATS_URL": "nats://b"}, "nats://c"},
	} {
		sub, v := newCmd()
		if err := sub.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		lookup := func(k string) (string, bool) { s, ok := tc.env[k]; return s, ok }
		if err := applyEnv(sub, lookup); err != nil || *v != tc.want {
			t.Errorf("%s: %q (%v), want %q", tc.name, *v, err, tc.want)
		}
	}
	sub, _ := newCmd()
	if u := sub.Flags().Lookup("nats").Usage; !strings.HasSuffix(u, "(env TROY_NATS_URL, then NATS_URL)") {
		t.Errorf("help does not name the variables: %q", u)
	}
	// A value the flag refuses is named with its variable.
	bad := &cobra.Command{Use: "x"}
	bad.Flags().Int("max", 0, "")
	bindEnv(bad, []envBinding{{flag: "max", vars: []string{"TROY_MAX"}}})
	if err := applyEnv(bad, func(string) (string, bool) { return "many", true }); err == nil || !strings.Contains(err.Error(), "$TROY_MAX (for --max)") {
		t.Errorf("bad value: %v", err)
	}
}

// The bindings reach the real commands: every command with a bound flag names the
// variable in its help, and the variable acts when the flag is not given.
func TestEnvVariablesInCommands(t *testing.T) {
	var walk func(c *cobra.Command)
	bound := map[string]int{}
	walk = func(c *cobra.Command) {
		for _, b := range envBindings() {
			if fl := c.Flags().Lookup(b.flag); fl != nil && !strings.Contains(fl.Usage, "(env "+b.vars[0]) {
				if len(b.skip) == 0 || !strings.Contains(strings.Join(b.skip, ","), c.CommandPath()) {
					t.Errorf("%s --%s: help names no variable: %q", c.CommandPath(), b.flag, fl.Usage)
				}
			} else if fl != nil {
				bound[b.flag]++
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(&app{}))
	for _, flag := range []string{"nats", "data-dir", "policy", "clickhouse", "signing-key", "creds"} {
		if bound[flag] == 0 {
			t.Errorf("no command binds --%s", flag)
		}
	}
	if u := troyctl(t, "replay", "--help").stdout; strings.Contains(u, "TROY_POLICY") {
		t.Errorf("replay --policy re-evaluates: not a deployment's default")
	}

	t.Chdir(t.TempDir())
	t.Setenv("TROY_DATA_DIR", "from-env")
	if r := troyctl(t, "auth", "public-key"); r.code != exitError || !strings.Contains(r.stderr, "from-env/auth/signing.key") {
		t.Fatalf("TROY_DATA_DIR not used: %+v", r)
	}
	if r := troyctl(t, "auth", "public-key", "--data-dir", "from-flag"); !strings.Contains(r.stderr, "from-flag/auth/signing.key") {
		t.Fatalf("--data-dir does not beat TROY_DATA_DIR: %+v", r)
	}
	// NATS_URL sends the audit to a deployment: here none listens there.
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	if r := troyctl(t, "audit", example(t, "traces", "clean-run.json"), "minimal"); r.code != exitError || !strings.Contains(r.stderr, "connect to NATS") {
		t.Fatalf("NATS_URL not used: %+v", r)
	}
}

func TestValidateJSON(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	doc := `{"policy_id":"x","rules":[{"rule_id":"a","description":"d","condition":"true","severity":"huge"},{"description":"d"}]}`
	if err := os.WriteFile(bad, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	r := troyctl(t, "policies", "validate", "--json", example(t, "policy.json"), bad, "no-such-policy")
	if r.code != exitError {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("one line per file: %q", r.stdout)
	}
	var got []validation
	for _, l := range lines {
		var v validation
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		got = append(got, v)
	}
	if !got[0].OK || got[0].Rules != 6 || len(got[0].Errors) != 0 {
		t.Errorf("good file: %+v", got[0])
	}
	want := []validationIssue{
		{RuleID: "a", Place: "severity", Message: `"huge" is not one of critical, high, medium, low`},
		{Place: "rules[1].rule_id", Message: "required field is missing"},
	}
	if got[1].OK || got[1].File != bad || len(got[1].Errors) != 2 || got[1].Errors[0] != want[0] || got[1].Errors[1] != want[1] {
		t.Errorf("bad file: %+v", got[1])
	}
	if got[2].OK || len(got[2].Errors) != 1 || !strings.Contains(got[2].Errors[0].Message, "no bundled template") {
		t.Errorf("missing file: %+v", got[2])
	}
	if r := troyctl(t, "policies", "validate", "--json", "soc2"); r.code != 0 {
		t.Errorf("a valid policy: exit %d", r.code)
	}
}
