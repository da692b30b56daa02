package storetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

// Postgres is a private PostgreSQL server on a loopback port, for tests
// that stop and start their database (never the shared one of
// TEST_POSTGRES_URL).
type Postgres struct {
	tb   testing.TB
	bin  string // the directory of initdb and postgres
	dir  string
	Port int
	cred *syscall.Credential // the postgres user's, when the test runs as root (initdb refuses root)
	cmd  *exec.Cmd
}

// StartPostgres initialises a data directory and runs postgres on a free
// port, with a database "switchboard"; it is stopped when the test ends.
// The test is skipped (failed with REQUIRE_SERVICES=1) when PostgreSQL's
// server programs are not installed.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		testenv.RequireService(tb, "PostgreSQL's initdb is not installed (/usr/lib/postgresql/*/bin); skipping the database outage test")
		return nil
	}
	p := &Postgres{tb: tb, bin: filepath.Dir(bins[len(bins)-1])}
	// Its own directory under the system's, which the postgres user can
	// reach (a test's TempDir sits in a directory only its owner can).
	dir, err := os.MkdirTemp("", "switchboard-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	p.dir = dir
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("running as root, and no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	initdb := p.command("initdb", "--no-sync", "--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C.UTF-8", "-D", filepath.Join(dir, "data"))
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p.Port = ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	p.Start()
	tb.Cleanup(p.Stop)
	conn, err := pgx.Connect(context.Background(), fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port))
	if err != nil {
		tb.Fatalf("connect to the private PostgreSQL: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE switchboard"); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	return p
}

// command runs one of PostgreSQL's programs, as the postgres user when the
// test runs as root.
func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return cmd
}

// URL is a DATABASE_URL for the server's database "switchboard".
func (p *Postgres) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/switchboard?sslmode=disable", p.Port)
}

// Start starts postgres (again, on the same data) and waits until it
// answers.
func (p *Postgres) Start() {
	p.tb.Helper()
	p.cmd = p.command("postgres", "-D", filepath.Join(p.dir, "data"), "-p", strconv.Itoa(p.Port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+p.dir,
		"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=100")
	log, err := os.OpenFile(filepath.Join(p.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.tb.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		p.tb.Fatalf("start postgres: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port))
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return
		}
	}
	out, _ := os.ReadFile(filepath.Join(p.dir, "server.log"))
	p.tb.Fatalf("postgres on port %d did not start:\n%s", p.Port, out)
}

// Stop stops postgres (a fast shutdown: its sessions end at once) and waits
// for it to exit.
func (p *Postgres) Stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	stopProcess(p.cmd, syscall.SIGINT)
	p.cmd = nil
}
