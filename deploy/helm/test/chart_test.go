package test

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "../troy"

// The components of `troyctl serve --only` (pipeline.Components()), each a Deployment.
var components = []string{"evaluator", "explainer", "reporter", "sink", "guard"}

// valueSets are the values the chart is linted and rendered with: the defaults and the
// settings that change what is rendered. The NATS dependency is not downloaded (tests run
// offline), so every set but "nats chart" uses an existing cluster at nats.url.
var valueSets = []struct {
	name        string
	set         string
	deployments []string // Deployment suffixes expected
	check       func(t *testing.T, objs objects)
}{
	{name: "defaults", deployments: append(slices.Clone(components), "gateway"), check: func(t *testing.T, o objects) {
		expectImage(t, o, "ghcr.io/troy-audit/troy:0.1.0")
		expectArg(t, o, "--nats=nats://nats:4222")
		expectArg(t, o, "--replicas=3")
		for name, d := range o.deployments {
			if args := d.Spec.Template.Spec.Containers[0].Args; slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--evaluator-partitions") }) {
				t.Errorf("%s: partitions with one evaluator: %v", name, args)
			}
		}
		policy := o.configMaps["release-name-troy-policy"]
		want, err := os.ReadFile(chartDir + "/files/policy.json")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(policy.Data["policy.json"]) != strings.TrimSpace(string(want)) {
			t.Errorf("the policy ConfigMap does not hold files/policy.json:\n%s", policy.Data["policy.json"])
		}
	}},
	{
		name: "external cluster, digest, exec probes, no sink",
		set: "nats.url=nats://a:4222\\,nats://b:4222,image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef," +
			"probe.type=exec,components.sink.enabled=false,streamReplicas=0,components.guard.replicas=5,components.evaluator.replicas=3,llm.apiKeySecret=openai,llm.model=gpt-4o-mini,policy.existingConfigMap=my-policy,policy.key=p.json",
		deployments: []string{"evaluator", "explainer", "reporter", "guard", "gateway"},
		check: func(t *testing.T, o objects) {
			expectImage(t, o, "ghcr.io/troy-audit/troy@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
			expectArg(t, o, "--nats=nats://a:4222,nats://b:4222")
			expectArg(t, o, "--policy=/etc/troy/policy/p.json")
			for name, d := range o.deployments {
				c := d.Spec.Template.Spec.Containers[0]
				if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--replicas") }) {
					t.Errorf("%s: --replicas with streamReplicas 0: %v", name, c.Args)
				}
				for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
					if p.Exec == nil || !slices.Equal(p.Exec.Command[:3], []string{"/usr/local/bin/troyctl", "health", "--url"}) || p.Exec.Command[3] != "http://127.0.0.1:9464/healthz" {
						t.Errorf("%s: not an exec probe with troyctl health: %+v", name, p)
					}
				}
				if v := volume(d, "policy"); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != "my-policy" {
					t.Errorf("%s: policy volume %+v", name, v)
				}
				key := envFrom(c, "OPENAI_API_KEY")
				if llm := name == "evaluator" || name == "explainer" || name == "guard"; llm != (key != nil && key.Name == "openai") {
					t.Errorf("%s: OPENAI_API_KEY from %+v", name, key)
				}
			}
			// Evaluator replicas share the stream over partitions; one evaluator reads it whole.
			if ev := o.deployments["evaluator"]; *ev.Spec.Replicas != 3 || !slices.Contains(ev.Spec.Template.Spec.Containers[0].Args, "--evaluator-partitions=16") {
				t.Errorf("evaluator: %d replicas, args %v", *ev.Spec.Replicas, ev.Spec.Template.Spec.Containers[0].Args)
			}
			if *o.deployments["guard"].Spec.Replicas != 5 {
				t.Errorf("guard replicas %d", *o.deployments["guard"].Spec.Replicas)
			}
			if len(o.configMaps) != 0 || len(o.secrets) != 0 {
				t.Errorf("a ConfigMap or Secret rendered though given: %v %v", o.configMaps, o.secrets)
			}
		},
	},
	{
		name:        "nats chart, DSN in values, no gateway",
		set:         "nats.enabled=true,nats.url=,clickhouse.existingSecret=,clickhouse.dsn=clickhouse://u:p@ch:9000/troy,gateway.enabled=false,components.reporter.reportsClaim=reports",
		deployments: components,
		check: func(t *testing.T, o objects) {
			expectArg(t, o, "--nats=nats://release-name-nats:4222")
			s, ok := o.secrets["release-name-troy-clickhouse"]
			if !ok || s.StringData["dsn"] != "clickhouse://u:p@ch:9000/troy" {
				t.Errorf("the ClickHouse Secret: %+v", s)
			}
			if v := volume(o.deployments["reporter"], "data"); v == nil || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "reports" {
				t.Errorf("the reporter's data volume: %+v", v)
			}
			if len(o.services) != 0 {
				t.Errorf("services without the gateway: %v", o.services)
			}
		},
	},
}

// Values the chart refuses, each with a message that says what was expected.
var badValues = []struct{ set, want string }{
	{"image.tag=latest", "image.tag latest: expected a pinned release"},
	{"image.tag=", "image.tag: expected a release"},
	{"nats.url=", "nats.url: expected the URL of an existing NATS cluster"},
	{"probe.type=tcp", `probe.type "tcp": expected http or exec`},
	{"clickhouse.existingSecret=", "clickhouse.dsn: expected a DSN"},
}

func TestLint(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			res := action.NewLint().Run([]string{chartDir}, values(t, vs.set))
			if len(res.Errors) > 0 {
				t.Fatalf("helm lint: %v", res.Errors)
			}
			for _, m := range res.Messages {
				// The NATS chart is a dependency that is not downloaded here.
				if m.Severity > support.InfoSev && !strings.Contains(m.Err.Error(), "missing these dependencies: nats") {
					t.Errorf("helm lint: %s", m)
				}
			}
		})
	}
}

func TestTemplate(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			manifest, err := render(t, vs.set)
			if err != nil {
				t.Fatal(err)
			}
			o := parse(t, manifest)
			var got []string
			for name := range o.deployments {
				got = append(got, name)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(vs.deployments))
			if !slices.Equal(got, want) {
				t.Fatalf("deployments %v, want %v", got, want)
			}
			for name, d := range o.deployments {
				checkDeployment(t, name, d, o)
			}
			if slices.Contains(vs.deployments, "gateway") {
				checkGatewayService(t, o)
			}
			vs.check(t, o)
		})
	}
}

func TestTemplateRefusesBadValues(t *testing.T) {
	for _, bv := range badValues {
		t.Run(bv.set, func(t *testing.T) {
			_, err := render(t, bv.set)
			if err == nil || !strings.Contains(err.Error(), bv.want) {
				t.Fatalf("err %v, want %q", err, bv.want)
			}
		})
	}
}

// checkDeployment checks what every component needs: `serve --only` its component, probes
// on /healthz, resources, a pinned image, the credentials and policy mounted, and the
// ClickHouse DSN from a Secret for the sink.
func checkDeployment(t *testing.T, name string, d appsv1.Deployment, o objects) {
	t.Helper()
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", name, len(spec.Containers))
	}
	c := spec.Containers[0]
	only := name
	if name == "gateway" {
		only = "guard" // serve runs at least one component; the guard answers the gateway
		if !slices.Contains(c.Args, "--http=0.0.0.0:8080") || !slices.Contains(c.Args, "--http-tokens=/etc/troy/http/http-tokens") {
			t.Errorf("gateway args %v", c.Args)
		}
		if v := volume(d, "http-tokens"); v == nil || v.Secret == nil || v.Secret.SecretName != "troy-http-tokens" {
			t.Errorf("gateway tokens volume %+v", v)
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" || !slices.Contains(c.Args, "--only="+only) {
		t.Errorf("%s: args %v lack serve --only=%s", name, c.Args, only)
	}
	for _, want := range []string{"--metrics=0.0.0.0:9464", "--creds=/etc/troy/nats/service.creds", "--data-dir=/var/lib/troy"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("%s: args %v lack %s", name, c.Args, want)
		}
	}
	for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		switch {
		case p == nil:
			t.Errorf("%s: no %s probe", name, kind)
		case p.HTTPGet != nil:
			if p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "metrics" || !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == "metrics" && cp.ContainerPort == 9464 }) {
				t.Errorf("%s: %s probe %+v, ports %+v", name, kind, p.HTTPGet, c.Ports)
			}
		case p.Exec == nil:
			t.Errorf("%s: %s probe neither httpGet nor exec", name, kind)
		}
	}
	for _, rl := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		if rl.Cpu().IsZero() || rl.Memory().IsZero() {
			t.Errorf("%s: resources %+v", name, c.Resources)
		}
	}
	if tag := c.Image[strings.LastIndex(c.Image, ":")+1:]; !strings.Contains(c.Image, "@sha256:") && (tag == "latest" || !strings.Contains(c.Image, ":")) {
		t.Errorf("%s: image %q is not pinned", name, c.Image)
	}
	if v := volume(d, "nats-creds"); v == nil || v.Secret == nil || v.Secret.SecretName != "troy-nats-creds" {
		t.Errorf("%s: credentials volume %+v", name, v)
	}
	if v := volume(d, "policy"); v == nil || v.ConfigMap == nil {
		t.Errorf("%s: policy volume %+v", name, v)
	} else if _, made := o.configMaps[v.ConfigMap.Name]; !made && !strings.HasPrefix(v.ConfigMap.Name, "my-") {
		t.Errorf("%s: the policy ConfigMap %s is neither rendered nor given", name, v.ConfigMap.Name)
	}
	for _, m := range c.VolumeMounts {
		if volume(d, m.Name) == nil {
			t.Errorf("%s mounts volume %s, which is not declared", name, m.Name)
		}
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: root filesystem not read-only", name)
	}
	dsn := envFrom(c, "TROY_CLICKHOUSE")
	if (name == "sink") != (dsn != nil) {
		t.Errorf("%s: TROY_CLICKHOUSE from %+v", name, dsn)
	}
	if dsn != nil && dsn.Key != "dsn" {
		t.Errorf("%s: the DSN's key %q", name, dsn.Key)
	}
	sel := d.Spec.Selector.MatchLabels
	for k, v := range sel {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("%s: selector %v does not match the pod's labels %v", name, sel, d.Spec.Template.Labels)
		}
	}
}

func checkGatewayService(t *testing.T, o objects) {
	t.Helper()
	svc, ok := o.services["release-name-troy-gateway"]
	if !ok {
		t.Fatalf("no gateway Service: %v", o.services)
	}
	gw := o.deployments["gateway"]
	for k, v := range svc.Spec.Selector {
		if gw.Spec.Template.Labels[k] != v {
			t.Errorf("the Service's selector %v does not select the gateway's pods %v", svc.Spec.Selector, gw.Spec.Template.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "http" ||
		!slices.ContainsFunc(gw.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" && p.ContainerPort == 8080 }) {
		t.Errorf("gateway Service %+v", svc.Spec)
	}
}

func values(t *testing.T, set string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if set != "" {
		if err := strvals.ParseInto(set, vals); err != nil {
			t.Fatalf("--set %s: %v", set, err)
		}
	}
	return vals
}

// render is `helm template` of the chart with --set values.
func render(t *testing.T, set string) (string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = "release-name"
	install.Namespace = "troy"
	install.Replace = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rel, err := install.RunWithContext(ctx, ch, values(t, set))
	if err != nil {
		return "", err
	}
	return rel.(*release.Release).Manifest, nil
}

type objects struct {
	deployments map[string]appsv1.Deployment // by component
	services    map[string]corev1.Service
	configMaps  map[string]corev1.ConfigMap
	secrets     map[string]corev1.Secret
}

// parse reads the rendered objects strictly: a field Kubernetes does not know fails.
func parse(t *testing.T, manifest string) objects {
	t.Helper()
	o := objects{map[string]appsv1.Deployment{}, map[string]corev1.Service{}, map[string]corev1.ConfigMap{}, map[string]corev1.Secret{}}
	for doc := range strings.SplitSeq(manifest, "\n---") {
		doc = strings.TrimSpace(doc)
		if doc == "" {
			continue
		}
		var head struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		strict := func(into any) {
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s: %v\n%s", head.Kind, err, doc)
			}
		}
		switch head.Kind {
		case "Deployment":
			var d appsv1.Deployment
			strict(&d)
			o.deployments[d.Labels["app.kubernetes.io/component"]] = d
		case "Service":
			var s corev1.Service
			strict(&s)
			o.services[s.Name] = s
		case "ConfigMap":
			var c corev1.ConfigMap
			strict(&c)
			o.configMaps[c.Name] = c
		case "Secret":
			var s corev1.Secret
			strict(&s)
			o.secrets[s.Name] = s
		default:
			t.Errorf("unexpected %s:\n%s", head.Kind, doc)
		}
	}
	if bytes.Contains([]byte(manifest), []byte("<no value>")) {
		t.Errorf("a value is missing:\n%s", manifest)
	}
	return o
}

func volume(d appsv1.Deployment, name string) *corev1.Volume {
	for i, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return &d.Spec.Template.Spec.Volumes[i]
		}
	}
	return nil
}

func envFrom(c corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

func expectImage(t *testing.T, o objects, image string) {
	t.Helper()
	for name, d := range o.deployments {
		if got := d.Spec.Template.Spec.Containers[0].Image; got != image {
			t.Errorf("%s: image %q, want %q", name, got, image)
		}
	}
}

func expectArg(t *testing.T, o objects, arg string) {
	t.Helper()
	for name, d := range o.deployments {
		if args := d.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, arg) {
			t.Errorf("%s: args %v lack %s", name, args, arg)
		}
	}
}
