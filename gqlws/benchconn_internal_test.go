package gqlws

// benchConnOver is a connection of t over socket speaking proto, as far as
// the write path needs one.
func benchConnOver(t *Transport, socket *frameConn, proto string) *conn {
	return &conn{transport: t, socket: socket, proto: protocolNamed(proto)}
}
