package gqlws

// benchConnOver is a connection of t over fc speaking proto, as far as the
// write path needs one.
func benchConnOver(t *Transport, fc *frameConn, proto string) *conn {
	return &conn{t: t, fc: fc, proto: proto}
}
