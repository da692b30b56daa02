package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/store/storetest"
)

// privateDatabase is a database server of a test's own, which it stops
// and starts.
type privateDatabase interface {
	URL() string
	Start()
	Stop()
}

// TestDatabaseOutageFailsFastAndRecovers: with its database (MariaDB,
// PostgreSQL) stopped, the server answers mutations at once with
// UNAVAILABLE (no hang, nothing half-written), reports itself not ready,
// keeps its WebSocket clients, and recovers by itself when the database is
// back: the subscriber then gets what is posted, in order, without a gap.
func TestDatabaseOutageFailsFastAndRecovers(t *testing.T) {
	for name, start := range map[string]func(testing.TB) privateDatabase{
		"mariadb":  func(tb testing.TB) privateDatabase { return storetest.StartMariaDB(tb) },
		"postgres": func(tb testing.TB) privateDatabase { return storetest.StartPostgres(tb) },
	} {
		t.Run(name, func(t *testing.T) { databaseOutage(t, start(t)) })
	}
}

func databaseOutage(t *testing.T, db privateDatabase) {
	s := startServer(t, map[string]string{"DATABASE_URL": db.URL()})
	token := s.signIn(t, "poster")
	general := s.generalRoom(t)
	sub := s.chatWS(t, "")
	sub.subscribe("s", `subscription { statusPosted(after: "0") { id text } }`, nil)
	first := s.post(t, token, "before")
	var ev event
	sub.nextData("s", "statusPosted", &ev, 5*time.Second)
	require.Equal(t, first.ID, ev.ID)

	assert.Equal(t, 1.0, s.metric(t, "switchboard_ready"), "ready while the database answers")
	db.Stop()
	start := time.Now()
	r := s.do(t, token, `mutation { postStatus(text: "during") { id } }`, nil)
	took := time.Since(start)
	require.Len(t, r.Errors, 1)
	assert.Equal(t, "UNAVAILABLE", r.Errors[0].Code(), r.Errors[0].Message)
	assert.NotContains(t, r.Errors[0].Message, "127.0.0.1", "no internals in the message")
	assert.Less(t, took, 3*time.Second, "refused at once, not after a hang")
	t.Logf("a mutation during the outage was refused in %s", took.Round(time.Millisecond))
	// Every other path that needs the database says the same, at once.
	for _, op := range []struct {
		query string
		vars  map[string]any
	}{
		{`mutation($r: ID!) { postMessage(roomId: $r, text: "during") { id } }`, map[string]any{"r": general.ID}},
		{`mutation($r: ID!) { markRoomRead(roomId: $r) { id } }`, map[string]any{"r": general.ID}},
		{`mutation { markAllNotificationsRead }`, nil},
		{`mutation { signIn(name: "late") { token } }`, nil},
		{`{ statuses(first: 5) { edges { node { id } } } }`, nil},
		{`{ rooms { edges { node { id unreadCount lastMessage { id } } } } }`, nil},
	} {
		start := time.Now()
		r := s.do(t, token, op.query, op.vars)
		require.NotEmpty(t, r.Errors, op.query)
		assert.Equal(t, "UNAVAILABLE", r.Errors[0].Code(), "%s: %s", op.query, r.Errors[0].Message)
		assert.Less(t, time.Since(start), 3*time.Second, op.query)
	}
	late := s.chatWS(t, "")
	late.subscribe("m", `subscription($r: ID!) { messageAdded(roomId: $r, after: "0") { id } }`, map[string]any{"r": general.ID})
	// As graphql-ws's reference server does for a stream that fails to
	// start: the failure as a result, then the end of the operation.
	m := late.read(5 * time.Second)
	assert.Equal(t, "next", m.Type)
	assert.Contains(t, string(m.Payload), `"code":"UNAVAILABLE"`, "a subscription that needs the database")
	assert.Equal(t, "complete", late.read(5*time.Second).Type)

	resp, err := http.Get(s.URL + "/readyz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "not ready while the database is down")
	assert.Equal(t, 0.0, s.metric(t, "switchboard_ready"), "the readiness metric says so too")
	assert.GreaterOrEqual(t, s.metric(t, `switchboard_database_errors_total{kind="connection"}`), 1.0, "the failures are counted")

	sub.send("ping", "", nil)
	assert.Equal(t, "pong", sub.rawRead(5*time.Second).Type, "the subscriber stays connected")

	db.Start()
	var second status
	require.Eventually(t, func() bool {
		r := s.do(t, token, `mutation { postStatus(text: "after") { id } }`, nil)
		if len(r.Errors) > 0 {
			return false
		}
		second = s.post(t, token, "after, for sure")
		return true
	}, 30*time.Second, 200*time.Millisecond, "mutations work again once the database is back")
	assert.Equal(t, 1.0, s.metric(t, "switchboard_ready"), "ready again")
	var got []string
	for len(got) == 0 || got[len(got)-1] != second.ID {
		sub.nextData("s", "statusPosted", &ev, 10*time.Second)
		got = append(got, ev.ID)
	}
	assert.Equal(t, []string{"2", "3"}, got, "the refused status was never stored; the rest arrive in order")
}
