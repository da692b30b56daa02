package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
)

// TokenCommand is the token subcommand (args follow the word "token"): it
// creates a user with the --name given and prints a bearer token for it
// carrying the --role roles, valid for --ttl. It signs with the server's
// key (see MintToken), so it takes the server's storage settings: the
// --data-dir and --database-url flags or DATA_DIR, DATABASE_URL and
// AUTH_SECRET from getenv. Usage goes to stdout; --help returns nil.
func TokenCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("switchboard token", flag.ContinueOnError)
	fs.SetOutput(stdout)
	name := fs.String("name", "", "display name of the new user (required)")
	var roles []models.Role
	fs.Func("role", "role to grant: admin or publisher (repeatable, or comma-separated)", func(v string) error {
		for part := range strings.SplitSeq(v, ",") {
			r, err := models.ParseRole(part)
			if err != nil {
				return err
			}
			roles = append(roles, r)
		}
		return nil
	})
	ttl := fs.Duration("ttl", 30*24*time.Hour, "how long the token is valid")
	dataDir := fs.String("data-dir", "", "as the server's --data-dir")
	dbURL := fs.String("database-url", "", "as the server's --database-url")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var serverArgs []string
	if *dataDir != "" {
		serverArgs = append(serverArgs, "--data-dir", *dataDir)
	}
	if *dbURL != "" {
		serverArgs = append(serverArgs, "--database-url", *dbURL)
	}
	cfg, err := ParseConfig(serverArgs, getenv, io.Discard)
	if err != nil {
		return err
	}
	token, err := MintToken(ctx, cfg, *name, roles, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}

// MintToken creates a user named name in cfg's database and returns a
// bearer token for it with roles, valid for ttl, signed with the server's
// key: AUTH_SECRET, or the key kept in the database (created, with the
// schema, when the database is new).
func MintToken(ctx context.Context, cfg *Config, name string, roles []models.Role, ttl time.Duration) (string, error) {
	userName, err := models.UserName(name)
	if err != nil {
		return "", fmt.Errorf("--name: %w", err)
	}
	if ttl <= 0 {
		return "", errors.New("--ttl must be positive")
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return "", err
	}
	tokens, err := newTokens(ctx, cfg, db)
	if err != nil {
		return "", err
	}
	user, err := db.CreateUser(ctx, userName)
	if err != nil {
		return "", err
	}
	token, _, err := tokens.Issue(user, roles, ttl)
	return token, err
}
