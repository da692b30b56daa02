package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/accounts"
	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/store"
)

// TokenCommand is the token subcommand (args follow the word "token"). It
// starts an operator's session, with the --role roles, lasting --ttl, for a
// new user with the --name given (or the existing user --user), and prints
// its bearer token to stdout, and to stderr the session's id and how to end
// it. With "revoke" first it ends sessions instead (see revokeCommand). It
// works on the server's database and signs with the server's key (see
// MintSession), so it takes the server's storage settings: the --data-dir
// and --database-url flags or DATA_DIR, DATABASE_URL, REDIS_URL and
// AUTH_SECRET from getenv. Usage goes to stdout; --help returns nil.
func TokenCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "revoke" {
		return revokeCommand(ctx, args[1:], getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet("switchboard token", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var m Mint
	fs.StringVar(&m.Name, "name", "", "display name of a new user (this or --user is required)")
	fs.Int64Var(&m.UserID, "user", 0, "id of the existing user to start another session for, instead of --name")
	fs.Func("role", "role to grant: admin or publisher (repeatable, or comma-separated)", func(v string) error {
		for part := range strings.SplitSeq(v, ",") {
			r, err := models.ParseRole(part)
			if err != nil {
				return err
			}
			m.Roles = append(m.Roles, r)
		}
		return nil
	})
	fs.DurationVar(&m.TTL, "ttl", 30*24*time.Hour, "how long the session, and its token, last (refreshing never extends it)")
	cfg, err := parseStorageFlags(fs, args, getenv)
	if err != nil || cfg == nil {
		return err
	}
	s, err := MintSession(ctx, cfg, m)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(stdout, s.Token); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stderr, "session %s of user %d (%s) ends %s; end it sooner with: switchboard token revoke --session %s\n",
		s.ID, s.User.ID, s.User.Name, s.ExpiresAt.Format(time.RFC3339), s.ID)
	return err
}

// parseStorageFlags adds the storage flags (--data-dir, --database-url) to
// fs, parses args and returns the server's configuration from them and
// getenv; nil and no error for --help.
func parseStorageFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (*Config, error) {
	dataDir := fs.String("data-dir", "", "as the server's --data-dir")
	dbURL := fs.String("database-url", "", "as the server's --database-url")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var serverArgs []string
	if *dataDir != "" {
		serverArgs = append(serverArgs, "--data-dir", *dataDir)
	}
	if *dbURL != "" {
		serverArgs = append(serverArgs, "--database-url", *dbURL)
	}
	return ParseConfig(serverArgs, getenv, io.Discard)
}

// Mint says whose session MintSession starts: a new user's named Name, or
// the existing user UserID's; with Roles, lasting TTL.
type Mint struct {
	Name   string
	UserID int64
	Roles  []models.Role
	TTL    time.Duration
}

// MintSession starts an operator's session in cfg's database as m says and
// returns it with its first token, valid for the whole session (m.TTL, which
// nothing else caps), signed with the server's key: AUTH_SECRET, or the key
// kept in the database (created, with the schema, when the database is
// new).
func MintSession(ctx context.Context, cfg *Config, m Mint) (*models.Session, error) {
	if (m.Name == "") == (m.UserID == 0) {
		return nil, errors.New("give either --name (a new user) or --user (an existing one)")
	}
	if m.TTL < time.Second {
		return nil, errors.New("--ttl must be at least 1s")
	}
	var userName string
	if m.Name != "" {
		var err error
		if userName, err = models.UserName(m.Name); err != nil {
			return nil, fmt.Errorf("--name: %w", err)
		}
	}
	db, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	tokens, err := newTokens(ctx, cfg, db)
	if err != nil {
		return nil, err
	}
	var user *models.User
	if userName != "" {
		user, err = db.CreateUser(ctx, userName)
	} else if user, err = db.User(ctx, m.UserID); models.ErrorCode(err) == models.NotFound {
		err = fmt.Errorf("--user: there is no user %d", m.UserID)
	}
	if err != nil {
		return nil, err
	}
	return accounts.New(db, tokens, nil, accounts.Options{}).Mint(ctx, user, m.Roles, m.TTL)
}

// MintToken is MintSession for a new user named name, returning the token
// only.
func MintToken(ctx context.Context, cfg *Config, name string, roles []models.Role, ttl time.Duration) (string, error) {
	s, err := MintSession(ctx, cfg, Mint{Name: name, Roles: roles, TTL: ttl})
	if err != nil {
		return "", err
	}
	return s.Token, nil
}

// openStore opens and migrates cfg's database.
func openStore(ctx context.Context, cfg *Config) (*store.DB, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL, store.Options{Timeout: cfg.DBTimeout})
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// revokeCommand is "token revoke": it ends the session --session, or every
// session of the user --user, in the server's database (storage settings as
// for TokenCommand), and announces it to the running servers through Redis
// when REDIS_URL is set; each server also finds it in the database within
// seconds. It prints what it ended to stdout, and a failed announcement to
// stderr.
func revokeCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("switchboard token revoke", flag.ContinueOnError)
	fs.SetOutput(stdout)
	session := fs.String("session", "", "id of the session to end (as `switchboard token` printed it)")
	user := fs.Int64("user", 0, "id of the user whose sessions all end")
	cfg, err := parseStorageFlags(fs, args, getenv)
	if err != nil || cfg == nil {
		return err
	}
	switch {
	case (*session == "") == (*user == 0):
		return errors.New("give either --session ID or --user ID")
	case *session != "" && !models.ValidSessionID(*session):
		return fmt.Errorf("--session: %q is no session id (32 hex digits)", *session)
	}
	db, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	broker, closeBroker, err := announcer(ctx, cfg, db)
	if err != nil {
		return err
	}
	defer closeBroker()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sessions := accounts.NewSessions(db, broker, accounts.SessionsOptions{Log: log})
	if *session != "" {
		revoked, err := sessions.Revoke(ctx, *session)
		if models.ErrorCode(err) == models.NotFound {
			return fmt.Errorf("--session: there is no session %s", *session)
		}
		if err != nil {
			return err
		}
		if !revoked {
			_, err = fmt.Fprintf(stdout, "session %s had already been revoked\n", *session)
			return err
		}
		_, err = fmt.Fprintf(stdout, "revoked session %s\n", *session)
		return err
	}
	ids, err := sessions.RevokeUser(ctx, *user)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "revoked %d session(s) of user %d: %s\n", len(ids), *user, strings.Join(ids, " "))
	return err
}

// announcer returns the broker that tells the running servers of ended
// sessions at once: Redis's with REDIS_URL set, nil (no announcement)
// without. close closes it.
func announcer(ctx context.Context, cfg *Config, db *store.DB) (_ pubsub.Broker, close func(), _ error) {
	if cfg.RedisURL == "" {
		return nil, func() {}, nil
	}
	b, rc, err := openRedisBroker(ctx, cfg.RedisURL, db, nil)
	if err != nil {
		return nil, nil, err
	}
	return b, func() { _ = b.Close(); _ = rc.client.Close() }, nil
}
