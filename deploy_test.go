package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

// The deployment files are checked against the binary they deploy: no
// container runtime or service manager runs here, so what can be checked
// is what they say.

// settings returns the names of the server's settings, from its --help.
func settings(t *testing.T) map[string]bool {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"--help"}, func(string) string { return "" }, &out))
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(([A-Z][A-Z0-9_]+)\)`).FindAllStringSubmatch(out.String(), -1) {
		names[m[1]] = true
	}
	require.Contains(t, names, "ADDR")
	return names
}

// defaultShutdown returns SHUTDOWN_TIMEOUT's default, from --help.
func defaultShutdown(t *testing.T) time.Duration {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"--help"}, func(string) string { return "" }, &out))
	m := regexp.MustCompile(`\(SHUTDOWN_TIMEOUT\) \(default "([^"]+)"\)`).FindStringSubmatch(out.String())
	require.NotNil(t, m, "--help gives SHUTDOWN_TIMEOUT's default")
	d, err := time.ParseDuration(m[1])
	require.NoError(t, err)
	return d
}

// TestDockerfile: the image runs the binary as a non-root user, keeps its
// data on the /data volume where DATA_DIR points, exposes ADDR's port, is
// checked by a subcommand the binary has, sets only settings the server
// knows, and builds as CI does (static, no cgo, the version passed in).
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	known := settings(t)
	var user, volume, expose, health, build string
	env := map[string]string{}
	final := false
	for _, line := range strings.Split(string(raw), "\n") {
		word, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(word) {
		case "FROM":
			final = !strings.Contains(rest, " AS ")
		case "RUN":
			if strings.Contains(rest, "go build") {
				build = rest
			}
		case "USER":
			user = rest
		case "VOLUME":
			volume = rest
		case "EXPOSE":
			expose = rest
		case "HEALTHCHECK":
			health = rest
		case "ENV":
			if final {
				for _, kv := range strings.Fields(rest) {
					k, v, _ := strings.Cut(kv, "=")
					env[k] = v
				}
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	assert.NotContains(t, []string{"", "0", "root"}, uid, "a non-root user")
	assert.Contains(t, volume, `"/data"`)
	assert.Equal(t, "/data", env["DATA_DIR"], "the database on the volume")
	_, port, err := net.SplitHostPort(env["ADDR"])
	require.NoError(t, err, "ENV ADDR")
	assert.Equal(t, port, expose, "EXPOSE is ADDR's port")
	for k := range env {
		assert.True(t, known[k], "ENV %s is a setting of the server", k)
	}
	assert.Contains(t, build, "CGO_ENABLED=0 go build")
	assert.Contains(t, build, "-X main.version=${VERSION}")
	require.Contains(t, health, `"healthcheck"]`)
	err = run(t.Context(), []string{"healthcheck", "--help"}, func(string) string { return "" }, io.Discard)
	assert.True(t, errors.Is(err, flag.ErrHelp), "the binary has the healthcheck subcommand: %v", err)
}

// TestSystemdUnit: deploy/switchboard.service passes systemd-analyze
// verify (with ExecStart pointing at a binary that exists here), has the
// usual hardening, gives the server longer to stop than SHUTDOWN_TIMEOUT,
// and its environment file sets only settings the server knows.
func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile("deploy/switchboard.service")
	require.NoError(t, err)
	unit := string(raw)
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=switchboard", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"Restart=on-failure", "Environment=DATA_DIR=/var/lib/switchboard", "EnvironmentFile=/etc/switchboard/switchboard.env"} {
		assert.Contains(t, unit, want+"\n")
	}
	stop := regexp.MustCompile(`(?m)^TimeoutStopSec=(\S+)$`).FindStringSubmatch(unit)
	require.NotNil(t, stop)
	d, err := time.ParseDuration(stop[1])
	require.NoError(t, err)
	assert.Greater(t, d, defaultShutdown(t), "systemd waits longer than the server's graceful shutdown")

	known := settings(t)
	envFile, err := os.Open("deploy/switchboard.env")
	require.NoError(t, err)
	defer envFile.Close()
	sc := bufio.NewScanner(envFile)
	for sc.Scan() {
		line := strings.TrimPrefix(strings.TrimSpace(sc.Text()), "#")
		if k, _, ok := strings.Cut(line, "="); ok && regexp.MustCompile(`^[A-Z][A-Z0-9_]+$`).MatchString(k) {
			assert.True(t, known[k], "switchboard.env sets %s, a setting of the server", k)
		}
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		testenv.RequireService(t, "systemd-analyze is not installed; skipping the unit's verification")
	}
	self, err := os.Executable()
	require.NoError(t, err)
	copyPath := filepath.Join(t.TempDir(), "switchboard.service")
	require.NoError(t, os.WriteFile(copyPath, []byte(strings.ReplaceAll(unit, "/usr/local/bin/switchboard", self)), 0o644))
	out, err := exec.Command("systemd-analyze", "verify", copyPath).CombinedOutput()
	assert.NoError(t, err, "systemd-analyze verify: %s", out)
	assert.Empty(t, strings.TrimSpace(string(out)), "no warnings")
}

// probe is a container's HTTP probe.
type probe struct {
	HTTPGet struct{ Path, Port string } `yaml:"httpGet"`
}

// kube is the part of the Kubernetes objects TestKubernetes reads.
type kube struct {
	Kind     string
	Metadata struct {
		Name        string
		Annotations map[string]string
	}
	Data       map[string]string
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		}
		Template struct {
			Metadata struct{ Labels map[string]string }
			Spec     struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
				} `yaml:"securityContext"`
				Containers []struct {
					Ports []struct {
						Name          string
						ContainerPort int `yaml:"containerPort"`
					}
					ReadinessProbe probe `yaml:"readinessProbe"`
					LivenessProbe  probe `yaml:"livenessProbe"`
					Lifecycle      struct {
						PreStop struct {
							Sleep struct{ Seconds int }
						} `yaml:"preStop"`
					}
					SecurityContext struct {
						ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
					} `yaml:"securityContext"`
				}
			}
		}
	}
	Resources []string
}

// TestKubernetes: the kustomization lists files that exist; the ConfigMap
// and the Secret set only settings the server knows; the Deployment's
// ports are ADDR's and METRICS_ADDR's, its probes paths the server serves
// (asked of a running one), its pods non-root on a read-only root file
// system, its grace period longer than the preStop pause and
// SHUTDOWN_TIMEOUT together; the Service, PodDisruptionBudget and
// Deployment select the pods' labels; the Ingress keeps connections open
// longer than the keepalive.
func TestKubernetes(t *testing.T) {
	dir := "deploy/kubernetes"
	objects := map[string]kube{}
	var order kube
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &order))
	require.NotEmpty(t, order.Resources)
	for _, f := range order.Resources {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err, "the kustomization lists %s", f)
		var k kube
		require.NoError(t, yaml.Unmarshal(raw, &k), f)
		objects[k.Kind] = k
	}
	for _, kind := range []string{"ConfigMap", "Secret", "Deployment", "Service", "Ingress", "PodDisruptionBudget"} {
		require.Contains(t, objects, kind)
	}
	known := settings(t)
	env := map[string]string{}
	for _, m := range []map[string]string{objects["ConfigMap"].Data, objects["Secret"].StringData} {
		for k, v := range m {
			assert.True(t, known[k], "%s is a setting of the server", k)
			env[k] = v
		}
	}
	dep := objects["Deployment"].Spec
	pods := dep.Template.Metadata.Labels
	require.NotEmpty(t, pods)
	assert.Equal(t, pods, dep.Selector.MatchLabels, "the Deployment selects its pods")
	assert.Equal(t, pods, objects["PodDisruptionBudget"].Spec.Selector.MatchLabels)
	var svc struct {
		Spec struct{ Selector map[string]string }
	}
	raw, err = os.ReadFile(filepath.Join(dir, "service.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &svc))
	assert.Equal(t, pods, svc.Spec.Selector, "the Service selects the pods")

	require.Len(t, dep.Template.Spec.Containers, 1)
	c := dep.Template.Spec.Containers[0]
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	for name, setting := range map[string]string{"http": "ADDR", "metrics": "METRICS_ADDR"} {
		_, port, err := net.SplitHostPort(env[setting])
		require.NoError(t, err, setting)
		assert.Equal(t, port, ports[name], "the %s port is %s's", name, setting)
	}
	assert.True(t, dep.Template.Spec.SecurityContext.RunAsNonRoot)
	assert.True(t, c.SecurityContext.ReadOnlyRootFilesystem)
	shutdown, err := time.ParseDuration(env["SHUTDOWN_TIMEOUT"])
	require.NoError(t, err)
	pause := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	assert.Positive(t, pause, "a preStop pause lets the load balancers drain first")
	assert.Greater(t, time.Duration(dep.Template.Spec.TerminationGracePeriodSeconds)*time.Second, pause+shutdown,
		"the grace period outlasts the pause and the graceful shutdown")

	// The probes' paths, asked of a running server on the probes' port.
	srv := startTestServer(t, nil)
	for _, p := range []probe{c.ReadinessProbe, c.LivenessProbe} {
		assert.Equal(t, "http", p.HTTPGet.Port, "probes ask the server's own port")
		resp, err := http.Get(srv.URL() + p.HTTPGet.Path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", p.HTTPGet.Path)
	}

	keepalive := 25 * time.Second // WS_KEEPALIVE's default
	read, err := strconv.Atoi(objects["Ingress"].Metadata.Annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"])
	require.NoError(t, err)
	assert.Greater(t, time.Duration(read)*time.Second, keepalive*14/10, "the proxy waits longer than a keepalive round")
	assert.Equal(t, "off", objects["Ingress"].Metadata.Annotations["nginx.ingress.kubernetes.io/proxy-buffering"], "event streams unbuffered")
}

// metricNames returns the metrics a server exposes: every switchboard_*
// metric the README's table lists (app's TestREADMEMetricsTable proves it
// is what the server registers, series or not) and every name a running
// server's /metrics shows (the Go runtime's and the process's).
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	names := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(switchboard_[a-z_]+)").FindAllStringSubmatch(string(readme), -1) {
		names[m[1]] = true
	}
	require.Contains(t, names, "switchboard_events_delivered_total")
	srv := startTestServer(t, nil)
	resp, err := http.Get(srv.URL() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
		}
	}
	require.Contains(t, names, "go_goroutines")
	return names
}

// usedMetrics returns the metric names a PromQL text uses (a histogram's
// _bucket, _sum and _count as the histogram).
func usedMetrics(expr string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`\b((?:switchboard|go|process)_[a-z_]+|up)\b`).FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m, suffix); ok && strings.HasPrefix(m, "switchboard_") {
				m = base
			}
		}
		out = append(out, m)
	}
	return out
}

// TestDashboardAndAlerts: the Grafana dashboard's and the alert rules'
// queries name only metrics the server exposes (and Prometheus's own up),
// every rule has a runbook line, and promtool accepts the rules and the
// scrape configuration.
func TestDashboardAndAlerts(t *testing.T) {
	exposed := metricNames(t)
	exposed["up"] = true
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	raw, err := os.ReadFile("deploy/grafana/dashboard.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &dash))
	require.NotEmpty(t, dash.Panels)
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			used := usedMetrics(tg.Expr)
			assert.NotEmpty(t, used, "%s: %s", p.Title, tg.Expr)
			for _, m := range used {
				assert.True(t, exposed[m], "panel %q: %s is not a metric the server exposes", p.Title, m)
			}
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
				Annotations map[string]string
			}
		}
	}
	raw, err = os.ReadFile("deploy/prometheus/alerts.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &rules))
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			assert.NotEmpty(t, r.Annotations["runbook"], "%s has a runbook line", r.Alert)
			for _, m := range usedMetrics(r.Expr) {
				assert.True(t, exposed[m], "alert %s: %s is not a metric the server exposes", r.Alert, m)
			}
		}
	}
	require.Positive(t, n)

	if _, err := exec.LookPath("promtool"); err != nil {
		testenv.RequireService(t, "promtool is not installed (apt-get install prometheus); skipping its checks of the rules")
	}
	out, err := exec.Command("promtool", "check", "rules", "deploy/prometheus/alerts.yml").CombinedOutput()
	assert.NoError(t, err, "promtool check rules: %s", out)
	abs, err := filepath.Abs("deploy/prometheus/alerts.yml")
	require.NoError(t, err)
	cfg, err := os.ReadFile("deploy/prometheus/prometheus.yml")
	require.NoError(t, err)
	tmp := filepath.Join(t.TempDir(), "prometheus.yml")
	require.NoError(t, os.WriteFile(tmp, bytes.ReplaceAll(cfg, []byte("/etc/prometheus/alerts.yml"), []byte(abs)), 0o644))
	out, err = exec.Command("promtool", "check", "config", tmp).CombinedOutput()
	assert.NoError(t, err, "promtool check config: %s", out)
}

// TestCompose: compose.yaml runs the tested deploy/nginx.conf, whose
// upstreams are the replicas' ADDRs; sets only settings the server knows;
// Prometheus scrapes every replica's METRICS_ADDR; and every file it
// mounts exists.
func TestCompose(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Build       string
			Environment map[string]string
			Volumes     []string
		}
	}
	raw, err := os.ReadFile("compose.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &compose))
	known := settings(t)
	var addrs, metrics []string
	for name, s := range compose.Services {
		for _, v := range s.Volumes {
			if src, _, ok := strings.Cut(v, ":"); ok && strings.HasPrefix(src, "./") {
				_, err := os.Stat(src)
				assert.NoError(t, err, "%s mounts %s", name, src)
			}
		}
		if s.Build == "" {
			continue
		}
		for k := range s.Environment {
			assert.True(t, known[k], "%s sets %s, a setting of the server", name, k)
		}
		addrs = append(addrs, s.Environment["ADDR"])
		_, port, err := net.SplitHostPort(s.Environment["METRICS_ADDR"])
		require.NoError(t, err, name)
		metrics = append(metrics, "proxy:"+port)
	}
	require.Len(t, addrs, 2, "two replicas")
	assert.Contains(t, compose.Services["proxy"].Volumes, "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro", "the tested nginx configuration")
	nginx, err := os.ReadFile("deploy/nginx.conf")
	require.NoError(t, err)
	var upstreams []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server (\S+) `).FindAllStringSubmatch(string(nginx), -1) {
		upstreams = append(upstreams, m[1])
	}
	assert.ElementsMatch(t, upstreams, addrs, "nginx's upstreams are the replicas")
	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	raw, err = os.ReadFile("deploy/prometheus/prometheus.yml")
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &prom))
	require.NotEmpty(t, prom.ScrapeConfigs)
	assert.ElementsMatch(t, metrics, prom.ScrapeConfigs[0].StaticConfigs[0].Targets, "Prometheus scrapes every replica")
}
