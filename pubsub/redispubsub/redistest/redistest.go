// Package redistest gives tests a Redis: the shared one of TEST_REDIS_URL,
// or a private redis-server of their own that they may stop and start (for
// fault tests).
package redistest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

// URL returns TEST_REDIS_URL, skipping the test when it is not set (failing
// it with REQUIRE_SERVICES=1).
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("TEST_REDIS_URL")
	if u == "" {
		testenv.RequireService(tb, "TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0); skipping the Redis variant")
	}
	return u
}

// Client returns a client of the Redis at url, closed when the test ends
// (after the cleanups registered later, such as closing a broker on it).
func Client(tb testing.TB, url string) *redis.Client {
	tb.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatalf("redis url %q: %v", url, err)
	}
	c := redis.NewClient(opts)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Server is a private redis-server on a loopback port.
type Server struct {
	tb      testing.TB
	Port    int
	dir     string   // its working directory, kept across restarts
	args    []string // its own arguments (a cluster node's, a sentinel's)
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has exited
	started bool          // it has run: a restart keeps its ports
}

// Start runs a private redis-server (no persistence) on a free loopback
// port; it is stopped when the test ends. The test is skipped (failed with
// REQUIRE_SERVICES=1) when redis-server is not installed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := newServer(tb)
	s.Start()
	return s
}

// newServer returns a Server on a free loopback port, not started, stopped
// when the test ends.
func newServer(tb testing.TB, args ...string) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.RequireService(tb, "redis-server is not installed; skipping the Redis test that needs a server of its own")
	}
	s := &Server{tb: tb, dir: tb.TempDir(), args: args}
	s.pickPorts()
	tb.Cleanup(s.Stop)
	return s
}

// pickPorts gives the server free loopback ports: its own, and its
// cluster bus's when its arguments have --cluster-port.
func (s *Server) pickPorts() {
	bus := slices.Index(s.args, "--cluster-port")
	n := 1
	if bus >= 0 {
		n = 2
	}
	ports := freePorts(s.tb, n)
	s.Port = ports[0]
	if bus >= 0 {
		s.args[bus+1] = strconv.Itoa(ports[1])
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// (Ports asked for one at a time may come back the same: each is free
// again once its probe closes.)
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.Port) }

// Start starts the server (again) and waits until it accepts connections.
// A port found free may be taken by the time the server binds it (tests
// of other packages run at once, and outgoing connections take ports of
// the same range): a first start then tries other ports; a restart keeps
// its own, which its clients know.
func (s *Server) Start() {
	s.tb.Helper()
	for attempt := 1; ; attempt++ {
		out, ok := s.start()
		if ok {
			s.started = true
			return
		}
		if !s.started && attempt < 5 && strings.Contains(out, "Failed listening") {
			s.pickPorts()
			_ = os.Remove(filepath.Join(s.dir, "nodes.conf")) // a cluster node's, naming the ports it failed on
			continue
		}
		s.tb.Fatalf("redis-server on port %d did not start:\n%s", s.Port, out)
	}
}

// start runs the server and reports whether it accepts connections within
// 10 s, and what it printed when it does not.
func (s *Server) start() (output string, ok bool) {
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir}, s.args...)
	if len(s.args) > 0 && s.args[0] == "--sentinel" { // a sentinel reads (and rewrites) its own file
		args = []string{filepath.Join(s.dir, "sentinel.conf"), "--sentinel", "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.dir}
	}
	var out testenv.Buffer
	s.cmd = exec.Command("redis-server", args...)
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exited) }(s.cmd)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			s.cmd = nil
			return out.String(), false
		default:
		}
		if s.answers() {
			return "", true
		}
	}
	s.Stop()
	return out.String(), false
}

// answers reports whether a Redis answers PING on the server's port (not
// whatever else may listen there).
func (s *Server) answers() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	reply := make([]byte, 7)
	_, err = io.ReadFull(c, reply)
	return err == nil && string(reply) == "+PONG\r\n"
}

// Stop kills the server (as a crash would) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Freeze stops the server with SIGSTOP: its connections stay open, new
// ones are accepted by the kernel, and nothing is answered, as with a hung
// server. Thaw resumes it; Stop kills it either way.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a server stopped by Freeze.
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.tb.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		s.tb.Fatal("redis-server is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("signal redis-server: %v", err)
	}
}

// Clients returns how many client connections the server has, not counting
// the one this call opens.
func (s *Server) Clients(tb testing.TB) int {
	tb.Helper()
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(s.Port), "CLIENT", "LIST").Output()
	if err != nil {
		tb.Fatalf("redis-cli CLIENT LIST: %v", err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "cmd=client") {
			n++
		}
	}
	return n
}
