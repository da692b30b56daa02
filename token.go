package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
)

// runToken is the token subcommand: it creates a user with the given name
// and prints a bearer token for it carrying the given roles. It signs with
// the server's key (AUTH_SECRET, or the one kept in the database), so it
// takes the same DATABASE_URL / DATA_DIR as the server.
func runToken(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("switchboard token", flag.ContinueOnError)
	fs.SetOutput(stdout)
	name := fs.String("name", "", "display name of the new user (required)")
	var roles roleList
	fs.Var(&roles, "role", "role to grant: admin or publisher (repeatable, or comma-separated)")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "how long the token is valid")
	// The server's storage flags, so the token is signed with its key.
	var serverArgs []string
	dataDir := fs.String("data-dir", "", "as the server's --data-dir")
	dbURL := fs.String("database-url", "", "as the server's --database-url")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if *dataDir != "" {
		serverArgs = append(serverArgs, "--data-dir", *dataDir)
	}
	if *dbURL != "" {
		serverArgs = append(serverArgs, "--database-url", *dbURL)
	}
	userName, err := models.UserName(*name)
	if err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl must be positive")
	}
	cfg, err := parseConfig(serverArgs, getenv, io.Discard)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	tokens, err := newTokens(ctx, cfg, db)
	if err != nil {
		return err
	}
	user, err := db.CreateUser(ctx, userName)
	if err != nil {
		return err
	}
	token, _, err := tokens.Issue(user, roles, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, token)
	return nil
}

// roleList is a repeatable --role flag.
type roleList []models.Role

func (l *roleList) String() string {
	s := make([]string, len(*l))
	for i, r := range *l {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

func (l *roleList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		r, err := models.ParseRole(part)
		if err != nil {
			return err
		}
		*l = append(*l, r)
	}
	return nil
}
