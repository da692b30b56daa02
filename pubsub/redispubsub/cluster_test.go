package redispubsub_test

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/switchboardhq/switchboard/pubsub"
	"github.com/switchboardhq/switchboard/pubsub/pubsubtest"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub"
	"github.com/switchboardhq/switchboard/pubsub/redispubsub/redistest"
)

// TestConformanceOnACluster: the broker keeps pubsub.Broker's promises on
// a Redis Cluster of three masters, with sharded pub/sub.
func TestConformanceOnACluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3, 0)
	pubsubtest.Run(t, func(tb testing.TB, buffer int) pubsub.Broker {
		b := redispubsub.New(cluster.Client(tb), redispubsub.Options{Prefix: prefix(), Buffer: buffer})
		tb.Cleanup(func() { _ = b.Close() })
		return b
	})
}

// TestConformanceThroughSentinel: and on a master found through Sentinel.
func TestConformanceThroughSentinel(t *testing.T) {
	s := redistest.StartSentinel(t)
	pubsubtest.Run(t, func(tb testing.TB, buffer int) pubsub.Broker {
		b := redispubsub.New(s.Client(tb), redispubsub.Options{Prefix: prefix(), Buffer: buffer})
		tb.Cleanup(func() { _ = b.Close() })
		return b
	})
}

// TestClusterMessagesStayOnTheirShard: on a cluster, a topic's messages go
// through its slot's master alone (SPUBLISH: the other masters see no
// pub/sub traffic, where PUBLISH is sent to every node), and a replica
// holds one subscription connection per master it listens on, whatever
// its number of topics.
func TestClusterMessagesStayOnTheirShard(t *testing.T) {
	cluster := redistest.StartCluster(t, 3, 0)
	p := prefix()
	a := redispubsub.New(cluster.Client(t), redispubsub.Options{Prefix: p})
	t.Cleanup(func() { _ = a.Close() })
	b := redispubsub.New(cluster.Client(t), redispubsub.Options{Prefix: p})
	t.Cleanup(func() { _ = b.Close() })

	var subs []*pubsub.Subscription
	for i := range 30 {
		sub, err := b.Subscribe(t.Context(), fmt.Sprintf("room:%d", i))
		require.NoError(t, err)
		subs = append(subs, sub)
	}
	owner := cluster.MasterOf(p + "room:7")
	before := map[int]int{}
	for _, n := range cluster.Nodes {
		before[n.Port] = shardMessages(t, n.Port)
	}
	for range 20 {
		require.NoError(t, a.Publish(t.Context(), "room:7", []byte("hello")))
	}
	for range 20 {
		assertReceives(t, subs[7], "hello", "not delivered")
	}
	for _, n := range cluster.Nodes {
		got := shardMessages(t, n.Port) - before[n.Port]
		if n == owner {
			assert.GreaterOrEqual(t, got, 20, "the owner of room:7's slot carried its messages")
		} else {
			assert.Zero(t, got, "node %d, which does not own room:7's slot, saw its messages", n.Port)
		}
	}
	for _, n := range cluster.Nodes {
		conns := pubsubConns(t, n.Port)
		assert.LessOrEqual(t, conns, 1, "node %d: one subscription connection of the replica at most", n.Port)
	}
}

// TestClusterFailover: the master of a busy topic dies; its subscriptions
// end with ErrDisconnected (their owners catch up from the database), the
// other shards' stay; once a replica has taken over, subscribing and
// publishing work again, on the new master.
func TestClusterFailover(t *testing.T) {
	cluster := redistest.StartCluster(t, 3, 1)
	p := prefix()
	b := redispubsub.New(cluster.Client(t), redispubsub.Options{Prefix: p, SubscribeTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = b.Close() })
	busy, err := b.Subscribe(t.Context(), "statuses")
	require.NoError(t, err)
	owner := cluster.MasterOf(p + "statuses")
	var other *pubsub.Subscription
	for i := 0; other == nil; i++ {
		if cluster.MasterOf(p+fmt.Sprintf("room:%d", i)) != owner {
			other, err = b.Subscribe(t.Context(), fmt.Sprintf("room:%d", i))
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Publish(t.Context(), fmt.Sprintf("room:%d", i), []byte("still")) })
			defer func() {
				require.NoError(t, b.Publish(t.Context(), fmt.Sprintf("room:%d", i), []byte("still")))
				assertReceives(t, other, "still", "another shard's subscription was lost with the dead master")
			}()
		}
	}

	start := time.Now()
	owner.Stop()
	select {
	case <-busy.Done():
		assert.True(t, errors.Is(busy.Err(), redispubsub.ErrDisconnected), "ended with %v", busy.Err())
	case <-time.After(20 * time.Second):
		t.Fatal("the subscription outlived its shard's master")
	}
	var again *pubsub.Subscription
	require.Eventually(t, func() bool {
		again, err = b.Subscribe(t.Context(), "statuses")
		return err == nil
	}, 30*time.Second, 200*time.Millisecond, "subscribing works again once a replica took over")
	require.Eventually(t, func() bool { return b.Publish(t.Context(), "statuses", []byte("back")) == nil }, 10*time.Second, 100*time.Millisecond)
	assertReceives(t, again, "back", "not delivered by the new master")
	assert.NotSame(t, owner, cluster.MasterOf(p+"statuses"), "a replica is the master now")
	t.Logf("subscribed again %v after the master died", time.Since(start).Round(10*time.Millisecond))
}

// TestSentinelFailover: the master dies; the subscriptions end, and once
// the sentinel has promoted the replica, subscribing and publishing work
// again through the same client.
func TestSentinelFailover(t *testing.T) {
	s := redistest.StartSentinel(t)
	b := redispubsub.New(s.Client(t), redispubsub.Options{Prefix: prefix(), SubscribeTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = b.Close() })
	sub, err := b.Subscribe(t.Context(), "statuses")
	require.NoError(t, err)
	start := time.Now()
	s.Master.Stop()
	select {
	case <-sub.Done():
		assert.True(t, errors.Is(sub.Err(), redispubsub.ErrDisconnected), "ended with %v", sub.Err())
	case <-time.After(20 * time.Second):
		t.Fatal("the subscription outlived its master")
	}
	var again *pubsub.Subscription
	require.Eventually(t, func() bool {
		if s.MasterAddr(t.Context()) != s.Replica.Addr() {
			return false
		}
		again, err = b.Subscribe(t.Context(), "statuses")
		return err == nil
	}, 30*time.Second, 200*time.Millisecond, "subscribing works again once the replica is the master")
	require.Eventually(t, func() bool { return b.Publish(t.Context(), "statuses", []byte("back")) == nil }, 10*time.Second, 100*time.Millisecond)
	assertReceives(t, again, "back", "not delivered by the new master")
	t.Logf("subscribed again %v after the master died", time.Since(start).Round(10*time.Millisecond))
}

// shardMessages is how many sharded pub/sub messages node port has
// received and sent on (INFO stats: total_commands of SPUBLISH there).
func shardMessages(t *testing.T, port int) int {
	t.Helper()
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(port), "INFO", "commandstats").Output()
	require.NoError(t, err)
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_spublish:calls="); ok {
			n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
			return n
		}
	}
	return 0
}

// pubsubConns is how many of node port's clients are subscribed to
// anything (sharded channels included).
func pubsubConns(t *testing.T, port int) int {
	t.Helper()
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(port), "CLIENT", "LIST").Output()
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "flags=P") {
			n++
		}
	}
	return n
}
