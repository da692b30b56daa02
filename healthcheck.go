package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

// healthcheck is the `switchboard healthcheck` subcommand, for a container's
// HEALTHCHECK (the final image has no shell and no curl): it asks the
// server on this machine for /healthz and fails unless it answers 200
// within the timeout. The address is ADDR's (a wildcard host is asked on
// loopback), over HTTPS when TLS_CERT_FILE is set (the certificate is not
// checked: the server asked is the one on this machine).
func healthcheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("switchboard healthcheck", flag.ContinueOnError)
	addr := fs.String("addr", getenv("ADDR"), "the server's ADDR (default :8080)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		*addr = ":8080"
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("healthcheck: ADDR must be host:port or :port (got %q)", *addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	client := &http.Client{Timeout: *timeout}
	if getenv("TLS_CERT_FILE") != "" {
		scheme = "https"
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // this machine's own server
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	_, err = fmt.Fprintln(stdout, "ok")
	return err
}

// buildVersion returns the server's version: the one the build set (-ldflags
// "-X main.version=…"), else the module's as `go install …@vX` records it,
// else "dev"; and the details: the VCS revision the binary was built from
// (with "+dirty" for uncommitted changes) and the Go version.
func buildVersion() (string, string) {
	v := version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return v, ""
	}
	if v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		v = info.Main.Version
	}
	var details []string
	var revision, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if revision != "" {
		details = append(details, "revision "+revision[:min(12, len(revision))]+dirty)
	}
	details = append(details, info.GoVersion)
	return v, strings.Join(details, ", ")
}
