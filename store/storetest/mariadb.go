package storetest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

// MariaDB is a private mariadbd on a loopback port, for tests that stop and
// start their database (never the shared one of TEST_MYSQL_URL).
type MariaDB struct {
	tb   testing.TB
	dir  string
	Port int
	cmd  *exec.Cmd
}

// StartMariaDB initialises a data directory and runs mariadbd on a free
// port; it is stopped when the test ends. The test is skipped (failed with
// REQUIRE_SERVICES=1) when MariaDB is not installed.
func StartMariaDB(tb testing.TB) *MariaDB {
	tb.Helper()
	for _, bin := range []string{"mariadb-install-db", "mariadbd"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err := os.Stat("/usr/sbin/" + bin); err != nil {
				testenv.RequireService(tb, "%s is not installed; skipping the database outage test", bin)
			}
		}
	}
	dir := tb.TempDir()
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+filepath.Join(dir, "data"),
		"--user="+currentUser(), "--auth-root-authentication-method=normal", "--skip-test-db")
	if out, err := install.CombinedOutput(); err != nil {
		tb.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	m := &MariaDB{tb: tb, dir: dir, Port: port}
	m.Start()
	tb.Cleanup(m.Stop)
	return m
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

// URL is a DATABASE_URL for the server's database "switchboard" (created
// by Start).
func (m *MariaDB) URL() string {
	return fmt.Sprintf("mysql://root@127.0.0.1:%d/switchboard", m.Port)
}

// Start starts mariadbd (again, on the same data) and waits until it
// answers.
func (m *MariaDB) Start() {
	m.tb.Helper()
	mariadbd, err := exec.LookPath("mariadbd")
	if err != nil {
		mariadbd = "/usr/sbin/mariadbd"
	}
	m.cmd = exec.Command(mariadbd, "--no-defaults", "--datadir="+filepath.Join(m.dir, "data"), "--user="+currentUser(),
		"--port="+strconv.Itoa(m.Port), "--bind-address=127.0.0.1", "--socket="+filepath.Join(m.dir, "mysqld.sock"),
		"--pid-file="+filepath.Join(m.dir, "mysqld.pid"), "--skip-log-bin", "--innodb-buffer-pool-size=16M",
		"--init-file="+m.initFile())
	log, err := os.OpenFile(filepath.Join(m.dir, "error.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		m.tb.Fatal(err)
	}
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		m.tb.Fatalf("start mariadbd: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", m.Port)); err == nil {
			_ = c.Close()
			return
		}
	}
	out, _ := os.ReadFile(filepath.Join(m.dir, "error.log"))
	m.tb.Fatalf("mariadbd on port %d did not start:\n%s", m.Port, out)
}

// initFile creates the server's database at every start.
func (m *MariaDB) initFile() string {
	path := filepath.Join(m.dir, "init.sql")
	if err := os.WriteFile(path, []byte("CREATE DATABASE IF NOT EXISTS switchboard;\n"), 0o644); err != nil {
		m.tb.Fatal(err)
	}
	return path
}

// Stop stops mariadbd and waits for it to exit.
func (m *MariaDB) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	stopProcess(m.cmd, syscall.SIGTERM)
	m.cmd = nil
}

// stopProcess sends cmd's process sig and waits for it to exit, killing
// it after 30 s.
func stopProcess(cmd *exec.Cmd, sig os.Signal) {
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
