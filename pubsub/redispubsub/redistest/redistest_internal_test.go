package redistest

import (
	"net"
	"slices"
	"strconv"
	"testing"
)

// TestStartMovesOffATakenPort: a first start whose port was taken since it
// was found free (by another test's server, or an outgoing connection)
// starts on another port, rather than failing the test that needed it.
func TestStartMovesOffATakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s := newServer(t)
	busy := taken.Addr().(*net.TCPAddr).Port
	s.Port = busy
	s.Start()
	if s.Port == busy {
		t.Fatalf("started on the taken port %d", busy)
	}
	c := Client(t, s.URL())
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("ping the server on its new port: %v", err)
	}
}

// TestClusterNodeMovesOffItsOwnPort: a cluster node whose bus port is its
// own port (two probes for free ports can find the same one) starts on
// ports of its own instead; ports found together are distinct.
func TestClusterNodeMovesOffItsOwnPort(t *testing.T) {
	for range 50 {
		if p := freePorts(t, 2); p[0] == p[1] {
			t.Fatalf("freePorts gave %d twice", p[0])
		}
	}
	s := newServer(t, "--cluster-enabled", "yes", "--cluster-port", "", "--cluster-config-file", "nodes.conf")
	s.args[slices.Index(s.args, "--cluster-port")+1] = strconv.Itoa(s.Port)
	s.Start()
	bus := s.args[slices.Index(s.args, "--cluster-port")+1]
	if bus == strconv.Itoa(s.Port) {
		t.Fatalf("the node runs with its bus on its own port %d", s.Port)
	}
	if err := Client(t, s.URL()).Ping(t.Context()).Err(); err != nil {
		t.Fatalf("ping the node: %v", err)
	}
}
