package store_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/store"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// job is the name the lead tests take.
const job = "switchboard.test-job"

// tryLead tries to take the lead of job on db.
func tryLead(tb testing.TB, db *store.DB, job string) *store.Lead {
	tb.Helper()
	l, err := db.TryLead(context.Background(), job)
	require.NoError(tb, err, "try to lead %s", job)
	return l
}

func TestTryLeadOnSQLite(t *testing.T) {
	t.Parallel()
	replicas := twoReplicas(t, store.SQLite)
	for i, db := range replicas {
		l := tryLead(t, db, job)
		require.NotNil(t, l, "replica %d: the process of an embedded database always leads", i)
		assert.True(t, l.Held(t.Context()))
		l.Release()
	}
}

func TestTryLeadOnMySQL(t *testing.T) {
	t.Parallel()
	replicas := twoReplicas(t, store.MySQL)
	a, b := replicas[0], replicas[1]
	ctx := t.Context()

	la := tryLead(t, a, job)
	require.NotNil(t, la, "the first caller leads")
	assert.True(t, la.Held(ctx))
	assert.Nil(t, tryLead(t, b, job), "a second process leads as well")
	assert.Nil(t, tryLead(t, a, job), "a second caller of the leading process leads as well")
	assert.True(t, la.Held(ctx), "trying took the lead away")

	other := tryLead(t, b, job+"-other")
	require.NotNil(t, other, "another job is led independently")
	other.Release()

	la.Release()
	lb := tryLead(t, b, job)
	require.NotNil(t, lb, "the lead is free after Release")
	t.Cleanup(lb.Release)
	assert.True(t, lb.Held(ctx))
	assert.Nil(t, tryLead(t, a, job), "the former leader took it back")
}

// TestTryLeadPerDatabase checks that databases sharing a MySQL server, such
// as two deployments, each have a leader: advisory locks are server-wide.
func TestTryLeadPerDatabase(t *testing.T) {
	t.Parallel()
	first, second := storetest.Open(t, store.MySQL), storetest.Open(t, store.MySQL)
	l1 := tryLead(t, first, job)
	require.NotNil(t, l1)
	t.Cleanup(l1.Release)
	l2 := tryLead(t, second, job)
	require.NotNil(t, l2, "a process of another database does not lead")
	t.Cleanup(l2.Release)
}

func TestLeadLostWithItsConnection(t *testing.T) {
	t.Parallel()
	url := storetest.URL(t, store.MySQL)
	ctx := t.Context()
	a := openURL(t, url)
	la := tryLead(t, a, job)
	require.NotNil(t, la)

	killConnections(t, url) // of a, the only process yet
	require.Eventually(t, func() bool { return !la.Held(ctx) }, 10*time.Second, 20*time.Millisecond,
		"the leader still believes it leads after losing its connection")

	b := openURL(t, url)
	var lb *store.Lead
	require.Eventually(t, func() bool { lb = tryLead(t, b, job); return lb != nil }, 10*time.Second, 20*time.Millisecond,
		"the lead of a dead connection is not free")
	t.Cleanup(lb.Release)
	la.Release()
	assert.True(t, lb.Held(ctx), "the former leader's Release freed the new leader's lead")
	assert.Nil(t, tryLead(t, a, job), "the former leader took it back")
}

// killConnections kills every connection to the MySQL database at url but
// its own, as a network failure or a server restart would.
func killConnections(tb testing.TB, url string) {
	tb.Helper()
	dsn, err := store.MySQLDSN(url, store.DefaultTimeout)
	require.NoError(tb, err)
	admin, err := sql.Open("mysql", dsn)
	require.NoError(tb, err)
	defer admin.Close()
	ctx := context.Background()
	rows, err := admin.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID()")
	require.NoError(tb, err)
	var ids []int64
	for rows.Next() {
		var id int64
		require.NoError(tb, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(tb, rows.Err())
	require.NotEmpty(tb, ids, "no connection to kill")
	for _, id := range ids {
		_, err := admin.ExecContext(ctx, "KILL CONNECTION ?", id)
		require.NoError(tb, err, "kill connection %d", id)
	}
}
