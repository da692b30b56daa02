package redistest

import (
	"net"
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
