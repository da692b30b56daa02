package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/app"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// The tests of the entry point itself: serving until a signal, and the
// dispatch to the version, help and token subcommands. The server's own
// behaviour is tested end to end in e2e/.

// TestMain runs main itself when SWITCHBOARD_TEST_MAIN=1: the test binary is
// then the switchboard binary, for TestServesUntilSIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("SWITCHBOARD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestServesUntilSIGTERM: the binary serves on ADDR with the environment's
// settings and, at SIGTERM (what process managers send), shuts down
// gracefully and exits 0.
func TestServesUntilSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0]) // no arguments: main reads them as its own
	cmd.Env = append(os.Environ(), "SWITCHBOARD_TEST_MAIN=1", "ADDR=127.0.0.1:0", "DATA_DIR="+t.TempDir(), "LOG_FORMAT=json")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(out)
	var url string
	for url == "" && lines.Scan() {
		var line struct{ Msg, URL string }
		if json.Unmarshal(lines.Bytes(), &line) == nil && line.Msg == "listening" {
			url = line.URL
		}
	}
	require.NotEmpty(t, url, "the server logs where it listens")
	resp, err := http.Get(url + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	var rest strings.Builder
	for lines.Scan() {
		rest.WriteString(lines.Text() + "\n")
	}
	require.NoError(t, cmd.Wait(), "exit status 0")
	assert.Contains(t, rest.String(), `"msg":"stopped"`)
}

// startTestServer starts the server with env (on a loopback port of its
// own, and a fresh DATA_DIR unless env gives one), shut down when the test
// ends if the test has not.
func startTestServer(t *testing.T, env map[string]string) *app.Server {
	t.Helper()
	vars := map[string]string{"ADDR": "127.0.0.1:0", "DATA_DIR": t.TempDir()}
	maps.Copy(vars, env)
	cfg, err := app.ParseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	require.NoError(t, err)
	srv, err := app.Start(t.Context(), cfg, io.Discard)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv
}

func TestVersionFlag(t *testing.T) {
	for _, arg := range []string{"--version", "-version", "version"} {
		var out bytes.Buffer
		require.NoError(t, run(t.Context(), []string{arg}, func(string) string { return "" }, &out))
		assert.Regexp(t, `^switchboard dev \(.*go1\.\d+.*\)\n$`, out.String(), "%s: the version, and the Go version it was built with", arg)
	}
}

// TestVersionOfABuild: a binary built with -X main.version prints that
// version, the VCS revision it was built from and the Go version.
func TestVersionOfABuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := t.TempDir() + "/switchboard"
	build := exec.Command("go", "build", "-buildvcs=true", "-ldflags", "-X main.version=v9.8.7", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	require.NoError(t, err)
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	assert.Regexp(t, `^switchboard v9\.8\.7 \(revision `+string(rev[:12])+`(\+dirty)?, go1\.\d+`, string(out))
}

// TestHealthcheck: the healthcheck subcommand succeeds against a server
// that serves, on ADDR's port whatever its host, and fails, at once, for
// one that is stopped.
func TestHealthcheck(t *testing.T) {
	srv := startTestServer(t, nil)
	port := srv.URL()[strings.LastIndex(srv.URL(), ":")+1:]
	for _, addr := range []string{"127.0.0.1:" + port, ":" + port, "0.0.0.0:" + port} {
		var out bytes.Buffer
		require.NoError(t, run(t.Context(), []string{"healthcheck"}, func(k string) string { return map[string]string{"ADDR": addr}[k] }, &out), addr)
		assert.Equal(t, "ok\n", out.String())
	}
	require.NoError(t, srv.Shutdown(t.Context()))
	err := run(t.Context(), []string{"healthcheck", "--addr", "127.0.0.1:" + port}, func(string) string { return "" }, io.Discard)
	assert.ErrorContains(t, err, "healthcheck", "a stopped server fails the check")
}

// TestHealthcheckOverTLS: with TLS_CERT_FILE set, as for the server it
// checks, the healthcheck asks over HTTPS (a plain HTTP request to a TLS
// server gets 400, which fails the check).
func TestHealthcheckOverTLS(t *testing.T) {
	certFile, keyFile, _ := testenv.SelfSigned(t, t.TempDir())
	env := map[string]string{"TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile}
	srv := startTestServer(t, env)
	require.True(t, strings.HasPrefix(srv.URL(), "https://"), srv.URL())
	env["ADDR"] = strings.TrimPrefix(srv.URL(), "https://")
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"healthcheck"}, func(k string) string { return env[k] }, &out))
	assert.Equal(t, "ok\n", out.String())
	err := run(t.Context(), []string{"healthcheck"}, func(k string) string { return map[string]string{"ADDR": env["ADDR"]}[k] }, io.Discard)
	assert.ErrorContains(t, err, "400", "without TLS_CERT_FILE it asks over HTTP, which the server refuses")
}

func TestHelpListsTheSettingsAndStops(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"--help"}, func(string) string { return "" }, &out))
	for _, name := range []string{"-addr", "(ADDR)", "-database-url", "DATABASE_URL", "-limit-query-depth", "(LIMIT_QUERY_DEPTH)"} {
		assert.Contains(t, out.String(), name)
	}
}

func TestBadConfigurationStopsBeforeServing(t *testing.T) {
	env := map[string]string{"ADDR": "nowhere", "LOG_LEVEL": "loud"}
	err := run(t.Context(), nil, func(k string) string { return env[k] }, io.Discard)
	assert.ErrorContains(t, err, "ADDR must be host:port")
	assert.ErrorContains(t, err, "LOG_LEVEL must be")
}

// TestTokenCommand: the token subcommand mints a token for a new user with
// the roles given, signed with the key the server on the same data
// directory uses; bad roles and a missing name are refused.
func TestTokenCommand(t *testing.T) {
	env := map[string]string{"DATA_DIR": t.TempDir(), "ADDR": "127.0.0.1:0"}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"token", "--name", "ops", "--role", "admin,publisher"}, getenv, &out))
	token := strings.TrimSpace(out.String())
	require.NotEmpty(t, token)

	srv := startTestServer(t, env)
	req, err := http.NewRequest(http.MethodPost, srv.URL()+"/graphql", strings.NewReader(`{"query":"{ me { name } }"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Data struct{ Me struct{ Name string } }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	assert.Equal(t, "ops", body.Data.Me.Name)

	err = run(t.Context(), []string{"token", "--name", "x", "--role", "root"}, getenv, io.Discard)
	assert.ErrorContains(t, err, "unknown role")
	err = run(t.Context(), []string{"token"}, getenv, io.Discard)
	assert.ErrorContains(t, err, "--name")
}
