package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
	"github.com/switchboardhq/switchboard/store/storetest"
)

// TestRedisClusterMasterDiesUnderTraffic: two replicas on a Redis Cluster
// (three masters, each with a replica); while statuses are posted through
// both, the master that owns the status channel's slot is killed. The
// subscribers on both replicas still get every status, in order and once:
// what the broker missed while a replica took over, the database fills in.
func TestRedisClusterMasterDiesUnderTraffic(t *testing.T) {
	cluster := redistest.StartCluster(t, 3, 1)
	a, replicas := startReplicasOn(t, 2, cluster.URL(), storetest.MySQLURL(t))
	token := a.signIn(t, "poster")
	subs := make([]*wsClient, len(replicas))
	for i, r := range replicas {
		subs[i] = r.chatWS(t, token)
		subs[i].subscribe("s", `subscription { statusPosted(after: "0") { id text } }`, nil)
	}
	first := replicas[0].post(t, token, "first")
	for i, c := range subs {
		var ev event
		c.nextData("s", "statusPosted", &ev, 10*time.Second)
		require.Equal(t, first.ID, ev.ID, "replica %d", i)
	}
	owner := cluster.ShardChannelOwner(":statuses")
	require.NotNil(t, owner, "a master carries the status channel")

	const total = 60
	var ids []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			st := replicas[i%2].post(t, token, fmt.Sprintf("status %d", i))
			mu.Lock()
			ids = append(ids, st.ID)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	})
	time.Sleep(time.Second)
	killed := time.Now()
	owner.Stop()
	wg.Wait()
	mu.Lock()
	want := append([]string(nil), ids...)
	mu.Unlock()
	for i, c := range subs {
		var got []string
		for len(got) < len(want) {
			var ev event
			c.nextData("s", "statusPosted", &ev, 15*time.Second)
			got = append(got, ev.ID)
		}
		assert.Equal(t, want, got, "replica %d: every status, in order, once", i)
	}
	t.Logf("every status delivered on both replicas %v after the master died", time.Since(killed).Round(10*time.Millisecond))
	assert.NotSame(t, owner, cluster.ShardChannelOwner(":statuses"), "a replica carries the channel now")
}
