package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a private Redis Cluster on loopback ports: masters, each with
// its replicas, made with redis-cli --cluster create. A node's timeout is
// 1 s, so a replica takes over a master that died within a few seconds.
type Cluster struct {
	tb    testing.TB
	Nodes []*Server
}

// StartCluster starts masters*(1+replicas) cluster nodes and joins them
// into a cluster; it is stopped when the test ends. The test is skipped
// (failed with REQUIRE_SERVICES=1) when redis-server is not installed.
func StartCluster(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb}
	var addrs []string
	for range masters * (1 + replicas) {
		// The cluster bus's port chosen free too (newServer fills it in):
		// Redis's default, the port + 10000, is past 65535 for a high
		// ephemeral port.
		s := newServer(tb, "--cluster-enabled", "yes", "--cluster-port", "", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
			"--cluster-require-full-coverage", "no")
		s.Start()
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

// URL is a REDIS_URL of the cluster, every node a seed.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr()
	for i, n := range c.Nodes[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + n.Addr()
	}
	return u
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr())
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: 2 * time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// MasterOf returns the node that is the master of key's slot now.
func (c *Cluster) MasterOf(key string) *Server {
	c.tb.Helper()
	slot := c.cli(c.live()[0], "CLUSTER", "KEYSLOT", key)
	for _, line := range strings.Split(c.cli(c.live()[0], "CLUSTER", "NODES"), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, _ := strings.Cut(r, "-")
			if hi == "" {
				hi = lo
			}
			s, _ := strconv.Atoi(slot)
			l, err1 := strconv.Atoi(lo)
			h, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil && l <= s && s <= h {
				addr, _, _ := strings.Cut(f[1], "@")
				for _, n := range c.Nodes {
					if n.Addr() == addr {
						return n
					}
				}
			}
		}
	}
	c.tb.Fatalf("no master serves the slot of %q", key)
	return nil
}

// WaitHealthy waits until every running node says the cluster is ok and
// knows a master for every slot.
func (c *Cluster) WaitHealthy(within time.Duration) {
	c.tb.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ok := true
		for _, n := range c.live() {
			info := c.cli(n, "CLUSTER", "INFO")
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.tb.Fatalf("the cluster is not healthy after %v:\n%s", within, c.cli(c.live()[0], "CLUSTER", "NODES"))
}

// live returns the nodes that run.
func (c *Cluster) live() []*Server {
	var out []*Server
	for _, n := range c.Nodes {
		if n.cmd != nil {
			out = append(out, n)
		}
	}
	return out
}

// cli runs redis-cli against node n and returns its output.
func (c *Cluster) cli(n *Server, args ...string) string {
	c.tb.Helper()
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(n.Port)}, args...)...).Output()
	if err != nil {
		c.tb.Fatalf("redis-cli -p %d %v: %v", n.Port, args, err)
	}
	return strings.TrimSpace(string(out))
}

// Sentinel is a private master, its replica and one sentinel watching them
// under the master name "switchboard" (quorum 1, down after 1 s).
type Sentinel struct {
	tb                        testing.TB
	Master, Replica, Sentinel *Server
}

// sentinelName is the master's name the sentinel knows it by.
const sentinelName = "switchboard"

// StartSentinel starts a master, a replica of it and a sentinel; they are
// stopped when the test ends.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	s := &Sentinel{tb: tb}
	s.Master = newServer(tb)
	s.Master.Start()
	s.Replica = newServer(tb, "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port))
	s.Replica.Start()
	s.Sentinel = newServer(tb, "--sentinel")
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 5000\n",
		sentinelName, s.Master.Port)
	if err := os.WriteFile(filepath.Join(s.Sentinel.dir, "sentinel.conf"), []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	s.Sentinel.Start()
	// The sentinel has found the replica once it lists it.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(s.Sentinel.Port), "SENTINEL", "REPLICAS", sentinelName).Output()
		if strings.Contains(string(out), strconv.Itoa(s.Replica.Port)) {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the sentinel does not see the replica: %s", out)
		}
	}
	return s
}

// URL is a REDIS_URL of the master through the sentinel.
func (s *Sentinel) URL() string {
	return fmt.Sprintf("redis://%s/0?master_name=%s", s.Sentinel.Addr(), sentinelName)
}

// Client returns a failover client of the master, closed when the test
// ends.
func (s *Sentinel) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sentinelName, SentinelAddrs: []string{s.Sentinel.Addr()},
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// MasterAddr is the master's address as the sentinel says now.
func (s *Sentinel) MasterAddr(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "redis-cli", "-p", strconv.Itoa(s.Sentinel.Port), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinelName).Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return ""
	}
	return f[0] + ":" + f[1]
}

// ShardChannelOwner returns the running master that has a sharded channel
// whose name ends with suffix subscribed, or nil.
func (c *Cluster) ShardChannelOwner(suffix string) *Server {
	c.tb.Helper()
	for _, n := range c.live() {
		if !strings.Contains(c.cli(n, "ROLE"), "master") {
			continue
		}
		for _, ch := range strings.Fields(c.cli(n, "PUBSUB", "SHARDCHANNELS", "*"+suffix)) {
			if strings.HasSuffix(ch, suffix) {
				return n
			}
		}
	}
	return nil
}

// Stop kills every node, as an outage of the whole cluster would.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}
