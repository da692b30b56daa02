package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

// defaultOf returns the default of a duration setting from --help.
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
