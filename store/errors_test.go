package store_test

import (
	"io"
	"net"
	"net/url"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/switchboardhq/switchboard/models"
	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// requireTranslated checks that err carries the domain code, the client
// message and the operation, and still reaches the driver's cause.
func requireTranslated(tb testing.TB, err error, code models.Code, message, op string, cause error) {
	tb.Helper()
	require.Error(tb, err)
	assert.Equal(tb, code, models.ErrorCode(err), "error %q", err)
	assert.ErrorIs(tb, err, cause, "the driver's error stays reachable")
	coded, ok := models.CodedError(err)
	require.True(tb, ok, "error %q", err)
	assert.Equal(tb, message, coded.Message, "the client's text")
	assert.Equal(tb, op, coded.Op)
	assert.Contains(tb, err.Error(), cause.Error(), "the log's text has the cause")
}

func TestNotFoundKeepsTheDriverError(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, dialect store.Dialect) {
		db := storetest.Open(t, dialect)
		_, err := db.User(t.Context(), 1<<40)
		requireTranslated(t, err, models.NotFound, "user 1099511627776 not found", "find user", gorm.ErrRecordNotFound)
		_, err = db.Room(t.Context(), 1<<40)
		requireTranslated(t, err, models.NotFound, "room 1099511627776 not found", "find room", gorm.ErrRecordNotFound)
	})
}

// TestRefusedConnectionKeepsTheDriverError: a store whose MySQL server
// stops answering (here: the proxy in front of it goes away) fails with
// UNAVAILABLE, and the refused connection stays reachable for the log.
func TestRefusedConnectionKeepsTheDriverError(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(storetest.MySQLURL(t))
	require.NoError(t, err)
	p := startProxy(t, u.Host)
	u.Host = p.addr
	db, err := store.Open(t.Context(), u.String(), store.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.NoError(t, db.Migrate(t.Context()))
	_, err = db.CreateUser(t.Context(), "ada")
	require.NoError(t, err)

	p.stop()
	_, err = db.User(t.Context(), 1)
	requireTranslated(t, err, models.Unavailable, "the database is unavailable, try again later", "find user 1", syscall.ECONNREFUSED)
	coded, _ := models.CodedError(err)
	assert.NotContains(t, coded.Message, "127.0.0.1", "no address in the client's text")
}

// proxy forwards TCP connections to a server until stop, which closes
// them and its listener: the port then refuses connections.
type proxy struct {
	addr    string
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
	stopped bool
}

// startProxy listens on a free loopback port and forwards to target; it is
// stopped when the test ends.
func startProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	p := &proxy{addr: ln.Addr().String(), ln: ln}
	p.wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				_ = client.Close()
				continue
			}
			if !p.track(client, server) {
				return
			}
			p.wg.Go(func() { _, _ = io.Copy(server, client); _ = server.Close() })
			p.wg.Go(func() { _, _ = io.Copy(client, server); _ = client.Close() })
		}
	})
	tb.Cleanup(p.stop)
	return p
}

// track records conns for stop, or closes them and reports false when stop
// has run.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	p.conns = append(p.conns, conns...)
	return true
}

// stop closes the listener and every connection, and waits for the
// forwarding goroutines to end.
func (p *proxy) stop() {
	_ = p.ln.Close()
	p.mu.Lock()
	p.stopped = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
