// Package deploy_test checks the deployment files: docker-compose.yml, the NATS cluster
// configuration and the Grafana dashboard. Docker cannot run here, so the compose file is
// checked for what it names, and the parts it wires are run for real elsewhere (the
// cluster test of troyctl).
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/troy-audit/troy/internal/natsauth"
	"github.com/troy-audit/troy/internal/warehouse"
	"github.com/troy-audit/troy/internal/warehouse/chtest"
	"github.com/troy-audit/troy/sdk/servetest"
)

type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       map[string]string `yaml:"build"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Ports       []string          `yaml:"ports"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   any               `yaml:"depends_on"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func readCompose(t *testing.T) compose {
	t.Helper()
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

func TestComposeFile(t *testing.T) {
	c := readCompose(t)
	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	if got := strings.Join(names, " "); got != "clickhouse grafana nats-1 nats-2 nats-3 prometheus troy troy-auth" {
		t.Fatalf("services: %s", got)
	}
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		s := c.Services[n]
		if s.Environment["NATS_NAME"] != n || !strings.HasPrefix(s.Image, "nats:") || !slices.Contains(s.Volumes, n+":/data") ||
			!slices.Contains(s.Volumes, "nats-accounts:/etc/nats/auth:ro") {
			t.Errorf("%s: name %q image %q volumes %v", n, s.Environment["NATS_NAME"], s.Image, s.Volumes)
		}
		for i := 1; i <= 3; i++ {
			if s.Environment["NATS_ROUTE_"+string(rune('0'+i))] == "" {
				t.Errorf("%s lacks route %d", n, i)
			}
		}
	}
	want := map[string][]string{
		"nats-1":     {"127.0.0.1:4222:4222"},
		"clickhouse": {"127.0.0.1:9000:9000"},
		"troy":       {"127.0.0.1:9464:9464", "127.0.0.1:4318:4318", "127.0.0.1:4317:4317"},
		"grafana":    {"127.0.0.1:3000:3000"},
	}
	for svc, ports := range want {
		for _, p := range ports {
			if !slices.Contains(c.Services[svc].Ports, p) {
				t.Errorf("%s does not publish %s: %v", svc, p, c.Services[svc].Ports)
			}
		}
	}
	troy := c.Services["troy"]
	if troy.Build["dockerfile"] != "deploy/Dockerfile" {
		t.Errorf("troy is not built from deploy/Dockerfile: %v", troy.Build)
	}
	cmd := strings.Join(troy.Command, " ")
	for _, flag := range []string{"serve", "--nats=nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222", "--replicas=3", "--clickhouse=clickhouse://clickhouse:9000/troy", "--policy=", "--creds=/var/lib/troy/auth/service.creds", "--otlp=0.0.0.0:4318", "--otlp-grpc=0.0.0.0:4317"} {
		if !strings.Contains(cmd, flag) {
			t.Errorf("troy's command lacks %s: %s", flag, cmd)
		}
	}
	// The servers require credentials: troy-auth writes the accounts they include and
	// the credentials troy uses, in volumes both see.
	auth := c.Services["troy-auth"]
	if got := strings.Join(auth.Command, " "); got != "auth nats-config --data-dir=/var/lib/troy --output=/var/lib/nats-accounts/accounts.conf" ||
		!slices.Contains(auth.Volumes, "troy-auth:/var/lib/troy/auth") || !slices.Contains(auth.Volumes, "nats-accounts:/var/lib/nats-accounts") ||
		!slices.Contains(troy.Volumes, "troy-auth:/var/lib/troy/auth") {
		t.Errorf("troy-auth: command %q, volumes %v; troy's volumes %v", got, auth.Volumes, troy.Volumes)
	}
	// Every file mounted from the repository exists, and every named volume is declared.
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s uses volume %s, which is not declared", name, src)
			}
		}
	}
	if _, err := os.Stat(filepath.Join("..", troy.Build["dockerfile"])); err != nil {
		t.Error(err)
	}
}

// pinned is an image reference with a release of at least major.minor, or a digest: not
// latest, nor a moving major tag such as nats:2-alpine.
var pinned = regexp.MustCompile(`^[a-z0-9./-]+(:v?[0-9]+\.[0-9]+[0-9A-Za-z.+-]*|@sha256:[0-9a-f]{64})$`)

// Every service's image is pinned, and every service that keeps running has a health
// check (a one-shot service, which others wait to complete, has none to keep).
func TestComposePinnedAndHealthy(t *testing.T) {
	for _, tt := range []struct {
		image string
		ok    bool
	}{
		{"nats:2.15.2-alpine", true}, {"clickhouse/clickhouse-server:25.8", true}, {"grafana/grafana:11.6.0", true},
		{"x@sha256:" + strings.Repeat("ab", 32), true},
		{"nats:2-alpine", false}, {"nats:latest", false}, {"nats", false}, {"grafana/grafana:main", false},
	} {
		if pinned.MatchString(tt.image) != tt.ok {
			t.Errorf("pinned(%q) = %v", tt.image, !tt.ok)
		}
	}
	c := readCompose(t)
	oneShot := map[string]bool{}
	for _, s := range c.Services {
		if deps, ok := s.DependsOn.(map[string]any); ok {
			for dep, cond := range deps {
				if m, ok := cond.(map[string]any); ok && m["condition"] == "service_completed_successfully" {
					oneShot[dep] = true
				}
			}
		}
	}
	for name, s := range c.Services {
		if s.Build == nil && !pinned.MatchString(s.Image) {
			t.Errorf("%s: image %q is not pinned to a release", name, s.Image)
		}
		if oneShot[name] {
			continue
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" {
			t.Errorf("%s: no health check", name)
		}
	}
	// troy's image is distroless: its health check is troyctl's own, at serve's --metrics.
	troy := c.Services["troy"]
	if troy.Healthcheck == nil || !slices.Equal(troy.Healthcheck.Test[:3], []string{"CMD", "/usr/local/bin/troyctl", "health"}) ||
		!slices.Contains(troy.Command, "--metrics=0.0.0.0:9464") || !slices.Contains(troy.Healthcheck.Test, "http://127.0.0.1:9464/healthz") {
		t.Errorf("troy's health check %+v, command %v", troy.Healthcheck, troy.Command)
	}
	docker, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(docker), "COPY --from=build /out/troyctl /usr/local/bin/troyctl") {
		t.Error("deploy/Dockerfile does not install troyctl at /usr/local/bin/troyctl, where the health checks run it")
	}
	// The image's troyctl version says which build it is.
	for _, v := range []string{"main.version=${VERSION}", "main.commit=${COMMIT}", "main.buildDate=${BUILD_DATE}"} {
		if !strings.Contains(string(docker), v) {
			t.Errorf("deploy/Dockerfile does not set %s", v)
		}
	}
}

// The Helm chart's default policy is the example policy.
func TestHelmChartPolicy(t *testing.T) {
	chart, err := os.ReadFile("helm/troy/files/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../examples/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chart, example) {
		t.Error("deploy/helm/troy/files/policy.json differs from examples/policy.json: copy it again")
	}
}

// The NATS configuration loads with each node's environment.
func TestNATSClusterConfig(t *testing.T) {
	env := map[string]string{
		"NATS_NAME": "nats-2", "NATS_HOST": "127.0.0.1", "NATS_PORT": "4223", "NATS_HTTP_PORT": "8223", "NATS_CLUSTER_PORT": "6223",
		"NATS_STORE": t.TempDir(), "NATS_ROUTE_1": "nats-route://127.0.0.1:6222", "NATS_ROUTE_2": "nats-route://127.0.0.1:6223", "NATS_ROUTE_3": "nats-route://127.0.0.1:6224",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	// The configuration includes auth/accounts.conf beside it, which troyctl auth
	// nats-config writes.
	dir := t.TempDir()
	conf, err := os.ReadFile("nats/cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ProcessConfigFile(filepath.Join(dir, "cluster.conf")); err == nil {
		t.Fatal("the configuration loads without the accounts it includes")
	}
	store, err := natsauth.Open(natsauth.Dir(filepath.Join(dir, "data")), true)
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := store.NATSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "auth"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth", "accounts.conf"), []byte(accounts), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(filepath.Join(dir, "cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.TrustedOperators) != 1 || o.SystemAccount == "" || o.AccountResolver == nil {
		t.Errorf("operator %d, system account %q, resolver %v: the servers do not require troy's credentials", len(o.TrustedOperators), o.SystemAccount, o.AccountResolver)
	}
	if o.ServerName != "nats-2" || o.Port != 4223 || o.Cluster.Port != 6223 || o.Cluster.Name != "troy" || len(o.Routes) != 3 || !o.JetStream || o.HTTPPort != 8223 {
		t.Fatalf("%+v", o)
	}
}

var macro = regexp.MustCompile(`\$__(timeFilter|timeInterval)\((\w+)\)`)

// The dashboard's panels query tables and columns that exist, and their SQL runs on a real
// server once Grafana's macros are expanded.
func TestGrafanaDashboard(t *testing.T) {
	d := readDashboard(t, "grafana/dashboards/troy.json")
	ds, err := readDatasources("grafana/provisioning/datasources/clickhouse.yaml")
	if err != nil || len(ds.Datasources) != 1 || ds.Datasources[0].JSONData["defaultDatabase"] != "troy" {
		t.Fatalf("datasource: %v %+v", err, ds)
	}
	srv := chtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, _, err := warehouse.Migrate(ctx, srv.DSN("troy"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(d.Panels) < 3 {
		t.Fatalf("%d panels", len(d.Panels))
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.Datasource.UID != ds.Datasources[0].UID {
				t.Errorf("%s: datasource %q", p.Title, tg.Datasource.UID)
			}
			sql := macro.ReplaceAllStringFunc(tg.RawSQL, func(m string) string {
				g := macro.FindStringSubmatch(m)
				if g[1] == "timeInterval" {
					return "toStartOfHour(" + g[2] + ")"
				}
				return g[2] + " >= now() - 86400 AND " + g[2] + " <= now()"
			})
			rows, err := s.Conn().Query(ctx, sql)
			if err != nil {
				t.Errorf("panel %q: %v\n%s", p.Title, err, sql)
				continue
			}
			rows.Close()
		}
	}
}

// The collector example sends the traces it receives to troy's OTLP/HTTP receiver, as
// docker-compose.yml serves it, with the token the compose file gives troy.
func TestCollectorConfig(t *testing.T) {
	raw, err := os.ReadFile("otel-collector/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Receivers map[string]any `yaml:"receivers"`
		Exporters map[string]struct {
			Endpoint    string            `yaml:"endpoint"`
			Compression string            `yaml:"compression"`
			Headers     map[string]string `yaml:"headers"`
		} `yaml:"exporters"`
		Service struct {
			Pipelines map[string]struct {
				Receivers, Processors, Exporters []string
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("otel-collector/config.yaml: %v", err)
	}
	exp, ok := cfg.Exporters["otlphttp/troy"]
	if !ok || exp.Endpoint != "http://troy:4318" || exp.Headers["Authorization"] != "Bearer ${env:TROY_OTLP_TOKEN}" {
		t.Errorf("the otlphttp/troy exporter: %+v", exp)
	}
	p := cfg.Service.Pipelines["traces"]
	if !slices.Equal(p.Receivers, []string{"otlp"}) || !slices.Equal(p.Exporters, []string{"otlphttp/troy"}) {
		t.Errorf("the traces pipeline: %+v", p)
	}
	compose, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(compose), "TROY_HTTP_TOKENS: ${TROY_OTLP_TOKEN") {
		t.Error("docker-compose.yml does not give troy the collector's token")
	}
}

// dashboard is what the tests read of a Grafana dashboard: each panel's queries.
type dashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			RawSQL     string `json:"rawSql"`
			Expr       string `json:"expr"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T, file string) dashboard {
	t.Helper()
	var d dashboard
	raw, err := os.ReadFile(file)
	if err == nil {
		err = json.Unmarshal(raw, &d)
	}
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return d
}

// datasources is a Grafana datasource provisioning file.
type datasources struct {
	Datasources []struct {
		UID      string         `yaml:"uid"`
		Type     string         `yaml:"type"`
		URL      string         `yaml:"url"`
		JSONData map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

func readDatasources(file string) (datasources, error) {
	var ds datasources
	raw, err := os.ReadFile(file)
	if err == nil {
		err = yaml.Unmarshal(raw, &ds)
	}
	return ds, err
}

// promName finds the metric names in PromQL: troy's and the standard collectors'.
var promName = regexp.MustCompile(`\b((?:troy|go|process)_[a-z0-9_]+)\b`)

// The operations dashboard queries the provisioned Prometheus datasource, and every
// metric it names is one a real serve exposes after traffic.
func TestOperationsDashboard(t *testing.T) {
	d := readDashboard(t, "grafana/dashboards/troy-operations.json")
	ds, err := readDatasources("grafana/provisioning/datasources/prometheus.yaml")
	if err != nil || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL == "" {
		t.Fatalf("prometheus datasource: %v %+v", err, ds)
	}
	// In the compose deployment, the datasource's URL is the Prometheus service, which
	// mounts the scrape config that names serve's --metrics address.
	c := readCompose(t)
	prom, ok := c.Services["prometheus"]
	if !ok || ds.Datasources[0].URL != "http://prometheus:9090" || !slices.Contains(prom.Volumes, "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro") {
		t.Errorf("compose's prometheus service %+v, the datasource's URL %q", prom, ds.Datasources[0].URL)
	}
	scrape, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil || !strings.Contains(string(scrape), `targets: ["troy:9464"]`) || !slices.Contains(c.Services["troy"].Command, "--metrics=0.0.0.0:9464") {
		t.Errorf("the scrape config does not name serve's metrics (%v)", err)
	}
	queried := map[string][]string{} // metric: panels
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != ds.Datasources[0].UID {
				t.Errorf("panel %q: datasource %q, want %q", p.Title, tg.Datasource.UID, ds.Datasources[0].UID)
			}
			names := promName.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: no metric in %q", p.Title, tg.Expr)
			}
			for _, n := range names {
				queried[n] = append(queried[n], p.Title)
			}
		}
	}
	for _, want := range []string{"troy_events_in_total", "troy_consumer_lag", "troy_guard_check_seconds_bucket", "troy_failures_total", "troy_llm_calls_total"} {
		if queried[want] == nil {
			t.Errorf("the dashboard does not show %s", want)
		}
	}

	s := servetest.Start(t)
	post := func(path, body string) {
		req, _ := http.NewRequest("POST", s.HTTP+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	post("/v1/guard/check", `{"session": "ops", "agent": "a", "step": {"action": "bash", "metadata": {"permission_level": "admin"}}}`)
	post("/v1/traces/ops/end", `{"agent": "a"}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		exposed := exposedNames(t, s.Metrics)
		var missing []string
		for n := range queried {
			family := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if f, ok := strings.CutSuffix(n, suffix); ok && exposed[f] {
					family = f
				}
			}
			if !exposed[family] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			slices.Sort(missing)
			t.Fatalf("the dashboard queries metrics serve does not expose: %v", missing)
		}
		time.Sleep(50 * time.Millisecond) // the verdict's violations are counted when the evaluator finishes
	}
}

// exposedNames reads the metric family names of a /metrics page.
func exposedNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	out := map[string]bool{}
	for name, mf := range mfs {
		if len(mf.GetMetric()) > 0 {
			out[name] = true
		}
	}
	return out
}
