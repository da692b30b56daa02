// Switchboard is a realtime GraphQL API server: queries and mutations over
// HTTP, live subscriptions over WebSocket, one binary.
//
// Usage:
//
//	switchboard [flags]                                    serve (see --help)
//	switchboard token --name NAME [--role ROLE] [--ttl D]  mint a token (a new session)
//	switchboard token revoke --session ID | --user ID      end sessions
//	switchboard version                                    print the version, the VCS revision and the Go version
//	switchboard healthcheck [--addr ADDR]                  exit 0 if the server on this machine answers /healthz
//
// Configuration comes from flags and environment variables; the README's
// configuration table lists them. This file is the entry point only: the
// server itself is package app.
package main

//go:generate go run github.com/99designs/gqlgen generate --config gqlgen.yml

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboardhq/switchboard/app"
)

// version is the server's version, set at build time with
// -ldflags "-X main.version=…"; without it, the module's (see
// buildVersion).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

// run carries out the command line args with the environment getenv,
// writing output and logs to stdout: it serves until ctx ends (SIGINT or
// SIGTERM) and the server has shut down, or runs a subcommand.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return app.TokenCommand(ctx, args[1:], getenv, stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], getenv, stdout)
	}
	v, details := buildVersion()
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		if details != "" {
			details = " (" + details + ")"
		}
		_, err := fmt.Fprintf(stdout, "switchboard %s%s\n", v, details)
		return err
	}
	cfg, err := app.ParseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg.Version = v
	return app.Run(ctx, cfg, stdout)
}
